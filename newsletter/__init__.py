"""newsletter: issue files → responsive email, Atom/RSS feeds and a web archive, sent with unsubscribe done right."""

__version__ = "0.1.0"
