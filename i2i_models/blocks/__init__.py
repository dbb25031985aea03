"""Networks shared by the families, one concern per file."""
