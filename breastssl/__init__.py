"""breastssl: annotation-efficient breast cancer CAD (mammography, DBT, ultrasound)."""

__version__ = "0.1.0"
