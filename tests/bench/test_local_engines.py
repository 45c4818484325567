"""The launchers of real engines look for them where the setup scripts put them: `.engines/`
and `scripts/engines/` at the repository root. A wrong root makes every engine test and
`aps bench upstream` fall back, silently, to the simulated GPU."""
from aps.bench.local import engines


def test_the_launchers_look_at_the_repository_root():
    assert (engines.REPO_ROOT / "pyproject.toml").is_file()
    assert (engines.REPO_ROOT / "aps" / "bench" / "local" / "engines.py").is_file()
    assert engines.ENGINES_DIR == engines.REPO_ROOT / ".engines"
    assert engines.LITELLM_TEMPLATE.is_file()
