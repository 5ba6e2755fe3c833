"""Plots and the HTML report of an evaluation (plain HTML, inline CSS and PNGs, no scripts), and the study viewer
(:mod:`.viewer`: one self-contained HTML page with inline scripts, from a predictions folder)."""
