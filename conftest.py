# Loads the harness pytest plugin, which collects the Experiment specs in experiments/.
pytest_plugins = ["harness.plugin"]
