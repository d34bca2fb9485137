"""A faithful, fast re-implementation of the NYU breast cancer screening classifier.

Wu et al., "Deep Neural Networks Improve Radiologists' Performance in Breast Cancer
Screening", IEEE TMI 2019. The numbers follow ``SPEC.md`` of the project; the scripts under
``src/`` are thin command-line wrappers over the functions of this package.
"""

__version__ = "0.1.0"
