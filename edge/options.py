"""The command-line options several `edge` subcommands share (--models, --artifacts-dir), and how a
comma-separated option value is read."""


def names(text):
    """A comma-separated option value as a list of names; None when the option was not given."""
    return text.split(",") if text else None


def add_models(parser):
    parser.add_argument("--models", help="comma-separated model names from the config (default: all)")


def add_artifacts_dir(parser, verb="are"):
    parser.add_argument("--artifacts-dir", help=f"where artifacts/<model>/ {verb} (default: from the config)")
