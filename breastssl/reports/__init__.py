"""Plots and the HTML report of an evaluation (plain HTML, inline CSS and PNGs, no scripts)."""
