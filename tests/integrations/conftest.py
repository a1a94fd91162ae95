def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs lm-eval's whole CLI (indexes its built-in tasks); deselect with -m 'not slow'")
