from oec.formats.text import TextFormat

__all__ = ["TextFormat"]
