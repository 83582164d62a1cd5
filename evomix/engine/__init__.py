"""Rendering: the analysis made once per session, the fast tier that renders a whole population in
the band/frame domain, the exact tier that renders one candidate sample by sample, and ``dsp``,
the reference definitions both tiers (and the tests) are checked against."""
