"""The project's typed errors. Each message is one line that names the file, video, node or key at fault."""


class Action100MError(Exception):
    """Base of every error the project raises on bad input."""


class ConfigError(Action100MError):
    """An unknown config key, a value of the wrong type, or a missing required value."""


class RecordError(Action100MError):
    """A video record that breaks the schema: bad id, span outside the video, nodes that do not tile."""
