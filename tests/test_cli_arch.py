import json

from rtseg.spaces import load_arch


def test_version_and_help(cli):
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.startswith("rtseg ")
    r = cli("--help")
    assert r.exit_code == 0 and "arch" in r.stdout


def test_arch_show_baseline1_json(cli):
    r = cli("arch", "show", "baseline1", "--input", "512x1024", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert isinstance(d["params"], int) and isinstance(d["flops"], int)
    assert abs(d["params"] - 0.96e6) / 0.96e6 < 0.03 and abs(d["flops"] - 11.2e9) / 11.2e9 < 0.03
    assert len(d["ops"]) == 3 + 5 + 8 + 2 and d["ops"][0]["type"] == "db"


def test_arch_sample_then_show(cli, tmp_path):
    out = tmp_path / "a.json"
    r = cli("arch", "sample", "--space", "ssr", "--seed", "7", "--out", out)
    assert r.exit_code == 0, r.output
    assert load_arch(out).space == "ssr"
    r = cli("arch", "show", out, "--input", "128x256")
    assert r.exit_code == 0 and "multiply-adds" in r.output
    # the same seed gives the same arch
    r2 = cli("arch", "sample", "--seed", "7")
    assert json.loads(r2.stdout)["genotype"] == load_arch(out).to_dict()["genotype"]


def test_user_errors_are_one_line_exit_2(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    cases = [
        ("arch", "show", tmp_path / "missing.json"),
        ("arch", "show", bad),
        ("arch", "show", "baseline1", "--input", "12xx"),
        ("arch", "sample", "--space", "nope"),
    ]
    for args in cases:
        r = cli(*args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
        assert r.output.strip().startswith("error:"), r.output
