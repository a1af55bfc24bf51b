"""``RUNPOD_ENDPOINT_ID`` set to the endpoint's URL as the RunPod console shows it
(``https://api.runpod.ai/v2/<id>/run``): doctor's fix proposed ``export
RUNPOD_ENDPOINT_ID=httpsapirunpodaiv2<id>run`` (every character no id has dropped), an id no
endpoint has, and a delegate's refusal said "the id alone" without saying which part that is."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_doctor import RUNPOD_KEY, findings, write_config

from swarm.cli import main

ENDPOINT = "x7k2m9qz4abcd1"
PASTED = f"https://api.runpod.ai/v2/{ENDPOINT}/run"


@pytest.fixture(autouse=True)
def pasted_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy",
                 "RUNPOD_POD_ID", "RUNPOD_WEBHOOK_GET_JOB", "SWARM_RUNNER", "RUNPOD_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", PASTED)
    monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
    monkeypatch.setenv("RUNPOD_API_BASE", "http://127.0.0.1:9/v2")  # nothing is sent: the id is refused first


def test_doctor_proposes_the_id_from_a_pasted_endpoint_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, found = findings(capsys, write_config(tmp_path), "--quick")

    runpod = found["runpod"]
    assert code == 1 and runpod["status"] == "fail", runpod
    assert runpod["fix"] == f"export RUNPOD_ENDPOINT_ID={ENDPOINT}", runpod
    assert RUNPOD_KEY not in str(found)


def test_a_delegate_refused_for_a_pasted_endpoint_url_names_the_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--config", str(write_config(tmp_path)), "delegate", "Say hi.", "-q"])

    err = capsys.readouterr().err
    assert code != 0, err
    assert f"set it to the id alone ({ENDPOINT} in this URL)" in err, err
    assert RUNPOD_KEY not in err


@pytest.mark.parametrize("pasted", [f"https://api.runpod.ai/v2/{ENDPOINT}", f"api.runpod.ai/v2/{ENDPOINT}/runsync",
                                    f"https://api.runpod.ai/v2/{ENDPOINT}/health?x=1"])
def test_each_shape_of_a_pasted_endpoint_url_gives_its_id(pasted: str) -> None:
    from swarm.executors.runpod_unreachable import endpoint_id_kept

    assert endpoint_id_kept(pasted) == ENDPOINT
    assert endpoint_id_kept("abc 123\r") == "abc123"  # no URL: the stray characters dropped, as before
