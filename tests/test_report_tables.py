from neuronaudit.report.tables import mean_pm_sem


def test_mean_pm_sem_text():
    assert mean_pm_sem(0.12345, 0.0056) == "0.1235 ± 0.0056"
    assert mean_pm_sem(0.5, float("nan"), digits=2) == "0.50"
    assert mean_pm_sem(float("nan"), 0.1) == "n/a"
    assert mean_pm_sem(float("nan"), 0.1, missing="") == ""
