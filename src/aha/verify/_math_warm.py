"""Imported once by the math pool's forkserver: one real comparison builds math-verify's lazy
state (LaTeX grammar, sympy caches) so every forked worker starts warm (~1 s saved per worker,
which would otherwise count against the first call's timeout)."""

from aha.verify.math_answer import math_verify_equal

math_verify_equal(r"\left( 3, \frac{\pi}{2} \right)", r"(3, \pi/2)")
math_verify_equal(r"\{1, 2\} \cup [3, 4)", "x^2 + 0.5")
# Intervals with π² fractions: sympy's first simplification of such bounds took ~0.5 s in a fresh
# worker (a third of a loaded machine's 1 s budget went on it before); warm here once instead.
math_verify_equal(r"\left[ \frac{\pi^2}{8}, \frac{5 \pi^2}{4} \right]", r"[ ((\pi^2)/(8)),  ((5 \pi^2)/(4)) ]")
