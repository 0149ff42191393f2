from pipeline.ablation import markdown, rows_from_exp_show


def record(rev, name, binary_len, variant, fid, std=None, rel=None):
    return {"rev": rev, "name": name, "data": {
        "rev": rev, "params": {"params.yaml": {"data": {"binary_len": binary_len, "hcdm": {"variant": variant}}}},
        "metrics": {"metrics/generation.json": {"data": {"fid": fid, "kid": 0.01, "precision": 0.5, "recall": 0.4,
                                                         "memorisation_distance": 3.0, "std_table": std,
                                                         "std_table_relative": rel}}}}}


def test_rows_and_tables_from_dvc_exp_show_json():
    payload = [
        record("workspace", None, 12, "hierarchical", 20.0, {"std_1": 1.0, "std_12": 0.9}),
        {**record("abc1234def", "main", 12, "hierarchical", 20.0, {"std_1": 1.0, "std_12": 0.9}),
         "experiments": [{"revs": [record("e1", "bl8", 8, "hierarchical", 21.0, {"std_1": 1.0, "std_12": 0.95})]},
                         {"revs": [record("e2", "flat", 12, "flat", 30.0)]}]},
        # bl8 evaluated again with one more metric: the fuller row replaces it.
        {**record("0ld0ld0", None, 1, "hierarchical", 1.0),
         "experiments": [{"revs": [record("e3", "bl8r", 8, "hierarchical", 21.0, {"std_1": 1.0, "std_12": 0.95},
                                          {"std_1": 1.1, "std_12": 0.7})]}]},
    ]
    rows = rows_from_exp_show(payload)
    # "main" repeats the workspace's params and metrics: listed once.
    assert [r["experiment"] for r in rows] == ["workspace", "bl8r", "flat", "0ld0ld0"]
    assert rows[1]["rel_std_12"] == 0.7
    assert rows[1]["binary_len"] == 8 and rows[1]["std_12"] == 0.95 and rows[2]["variant"] == "flat"
    md = markdown(rows)
    assert "| bl8r | 8 | 1 | 0.95 | 1.1 | 0.7 |" in md
    assert "| flat | flat | 12 | 30 | 0.01 | 0.5 | 0.4 | 3 |" in md


def test_table_2_columns_in_both_readings_and_units():
    rec = record("e9", "bl15", 15, "hierarchical", 20.0, {"std_1": 1.1, "std_12": 0.5}, {"std_1": 1.0, "std_12": 0.4})
    gen = rec["data"]["metrics"]["metrics/generation.json"]["data"]
    gen["std_table_raw"] = {"std_1": 0.8, "std_12": 0.3}
    gen["std_table_data_anchored"] = {"raw": {"std_1": 0.78, "std_12": 0.31}, "standardised": {"std_1": 1.0}}
    (row,) = rows_from_exp_show([rec])
    assert row["raw_std_1"] == 0.8 and row["data_std_1"] == 0.78 and "data_std_12" in row
    header = markdown([row]).splitlines()[2]
    assert header == ("| experiment | binary_len | std_1 | std_12 | raw_std_1 | raw_std_12 | data_std_1 | data_std_12 "
                      "| rel_std_1 | rel_std_12 |")
