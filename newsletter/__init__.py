"""newsletter: issue files → responsive email, Atom/RSS feeds and a web archive, sent with unsubscribe done right."""

__version__ = "0.1.0"
# The name pip knows it by ("newsletter" on PyPI is another project); the command and the module are `newsletter`.
DISTRIBUTION = "git-newsletter"
