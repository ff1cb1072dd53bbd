"""A clinical CT scanner model for the embedded data: fan-beam geometry of a Siemens Definition
Flash class scanner (:mod:`.geometry`), a 120 kVp polychromatic spectrum, energy-dependent
attenuation of body materials, a bowtie filter, an energy-integrating detector with electronic
noise and the water beam-hardening correction (:mod:`.xray`), put together slice by slice in
:mod:`.acquire`.
"""
