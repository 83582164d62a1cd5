"""Numbers shared by several modules, each defined once.

A constant lives here when more than one module needs the same value for the same reason; a value
used by one module stays in that module, beside the code that gives it its meaning. This module
imports nothing, so every layer may import it (``evomix.core`` is the leaf layer).

Source: ITU-R BS.1770-4 (2015) Annex 1 (gating blocks); EBU Tech 3341 (2016) and EBU Tech 3342
(2016) (short-term window, update rate).
"""

#: Smallest power (mean square, full-scale sine = 0.5) that a ratio divides by or a logarithm
#: reads: ``np.maximum(p, POWER_FLOOR)`` keeps silence finite (-200 dB) without moving any level
#: that can be heard (a choice: far below the 24-bit noise floor, about -146 dB).
POWER_FLOOR = 1e-20

#: BS.1770-4 gating block duration T_g, s (Annex 1, eq. 3); also the EBU Tech 3341 momentary window.
GATING_BLOCK_S = 0.4
#: Overlap of consecutive gating blocks, a fraction of a block (BS.1770-4 Annex 1: 75 %).
GATING_OVERLAP = 0.75
#: Hop between gating blocks, s: ``GATING_BLOCK_S * (1 - GATING_OVERLAP)``, exactly the float 0.1.
#: The loudness range's short-term windows are read at the same hop (10 Hz, the rate EBU Tech 3342
#: asks for).
GATING_HOP_S = GATING_BLOCK_S * (1.0 - GATING_OVERLAP)

#: Short-term loudness window, s (EBU Tech 3341 section 2.2; the loudness range of EBU Tech 3342 is
#: measured on these windows, so it needs at least this much audio).
SHORT_TERM_WINDOW_S = 3.0
K_WEIGHTING_SR = 48000  # Hz: band-centre K-weighting is evaluated at this rate whatever the session's
# (BS.1770-4 gives its coefficients at 48 kHz; at 44.1 or 96 kHz the curve differs by < 0.03 dB)
