"""The project's typed errors. Each message is one line that names the file, video, node or key at fault."""


class Action100MError(Exception):
    """Base of every error the project raises on bad input."""


class ConfigError(Action100MError):
    """An unknown config key, a value of the wrong type, or a missing required value."""


class RecordError(Action100MError):
    """A video record that breaks the schema: bad id, span outside the video, nodes that do not tile."""


class StageError(Action100MError):
    """A pipeline stage could not process one video or node; the builder records it and moves on."""

    def __init__(self, video_uid: str, stage: str, reason: str, node_id: str | None = None):
        self.video_uid, self.stage, self.reason, self.node_id = video_uid, stage, reason, node_id
        where = f"video {video_uid}" + (f": node {node_id}" if node_id else "")
        super().__init__(f"{where}: {stage}: {reason}")
