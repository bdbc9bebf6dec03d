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


def test_report_cli_errors(tmp_path, capsys):
    assert main([]) == 2
    assert main([str(tmp_path / "missing.csv")]) == 1
    assert "error" in capsys.readouterr().err
