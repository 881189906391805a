"""The scenario language's building blocks: YAML that remembers line numbers
(marked_yaml.py), typed readers whose errors read `file:line: ...`
(fields.py), `${NAME}` variables (variables.py), the `expect:` block
(expect.py), seeded images (seed_image.py) and the frozen dataclasses a
scenario file becomes (model.py). Step kinds (chaos.steps) and the loader
(chaos.scenario) are built from these.
"""
