"""Thin ``ray job submit`` entrypoints: parse args → load config → call one pipelines function → print JSON."""
