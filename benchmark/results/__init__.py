"""Rows, statistics, tables, plots, the report and final test scores (stages 5-6)."""
