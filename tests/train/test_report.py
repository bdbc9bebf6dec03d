import pytest

from adapix.train.report import main, report

HEADER = "step,hours,loss,bpp,psnr,lr,it_per_s,kind,quality,real_bpp,est_bpp,val_psnr\n"


def test_report_lists_validation_rows(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(HEADER + "25,0.01,3.0,0.5,20.0,1e-4,2.0,train,,,,\n"
                   "1000,0.40,,,,,,val,10.0,0.2,0.19,21.5\n"
                   "1000,0.40,,,,,,val,90.0,1.2,1.19,25.25\n")
    text = report(str(log))
    assert "| 1000 | 0.40 |" in text
    assert "0.200 (0.190) / 21.50 dB" in text and "1.200 (1.190) / 25.25 dB" in text
    assert "2.00 it/s" in text


def test_report_gives_the_speed_without_validation_rows(tmp_path):
    """A log without validation (e.g. a post-filter stage) still reports its speeds: mean,
    median and the 10th-90th percentile range of the logged it/s."""
    log = tmp_path / "log.csv"
    log.write_text(HEADER + "".join(f"{25 * k},0.01,3.0,0.5,20.0,1e-4,{v},train,,,,\n"
                                    for k, v in enumerate((1.0, 2.0, 3.0, 4.0, 10.0), 1)))
    text = report(str(log))
    assert text.startswith("no validation rows yet")
    assert "mean training speed over the log: 4.00 it/s (median 3.00, 10-90%: 1.40-7.60)" in text
    one = tmp_path / "one.csv"
    one.write_text(HEADER + "25,0.01,3.0,0.5,20.0,1e-4,2.5,train,,,,\n")
    assert "2.50 it/s (median 2.50, 10-90%: 2.50-2.50)" in report(str(one))
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER)
    assert report(str(empty)) == "no validation rows yet"


def test_compare_gives_the_mean_training_rows_per_window_of_common_steps(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(HEADER + "25,0.01,2.0,0.5,20.0,1e-4,2.0,train,,,,\n"
                 "50,0.02,4.0,0.7,22.0,1e-4,2.0,train,,,,\n"
                 "75,0.03,3.0,0.6,21.0,1e-4,2.0,train,,,,\n"
                 "50,0.02,,,,,,val,10.0,0.2,0.19,21.5\n")
    b.write_text(HEADER + "25,0.01,2.0,0.5,20.0,1e-4,2.0,train,,,,\n"
                 "50,0.02,2.0,0.5,20.0,1e-4,2.0,train,,,,\n")  # no step 75
    assert main([str(a), "--against", str(b), "--window", "50"]) == 0
    out = capsys.readouterr().out
    assert "| 1–50 | 2 | 3.0000 / 0.6000 / 21.000 | 2.0000 / 0.5000 / 20.000 | +50.00% |" in out
    assert "51–" not in out  # step 75 is not in both logs
    assert main([str(a), "--against", str(b), "--window", "0"]) == 2


def test_report_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        main([])
    assert usage.value.code == 2
    assert main([str(tmp_path / "missing.csv")]) == 1
    assert "error" in capsys.readouterr().err
