"""MIT-BIH beat and rhythm annotations in the AAMI EC57 grouping, and the standard splits.

References
----------
ANSI/AAMI EC57:2012, Testing and reporting performance results of cardiac rhythm and ST segment
measurement algorithms.
de Chazal P, O'Dwyer M, Reilly RB. Automatic classification of heartbeats using ECG morphology
and heartbeat interval features. IEEE Trans Biomed Eng 51(7):1196-1206 (2004): the
inter-patient split DS1/DS2.
"""

AAMI_CLASSES = ("N", "S", "V", "F", "Q")

# MIT-BIH beat annotation symbol -> AAMI class. Symbols not listed here (rhythm changes '+',
# noise '~', comments '"', signal quality marks, '!' flutter waves, 'x' non-conducted P
# waves, '|' isolated artefacts) are not beats.
SYMBOL_TO_AAMI = {
    "N": "N",  # normal
    "L": "N",  # left bundle branch block
    "R": "N",  # right bundle branch block
    "e": "N",  # atrial escape
    "j": "N",  # nodal (junctional) escape
    "A": "S",  # atrial premature
    "a": "S",  # aberrated atrial premature
    "J": "S",  # nodal (junctional) premature
    "S": "S",  # supraventricular premature or ectopic
    "V": "V",  # premature ventricular contraction
    "E": "V",  # ventricular escape
    "F": "F",  # fusion of ventricular and normal
    "/": "Q",  # paced
    "f": "Q",  # fusion of paced and normal
    "Q": "Q",  # unclassifiable
}

# Paced records, excluded from AAMI-style beat classification results.
PACED_RECORDS = ("102", "104", "107", "217")

DS1 = (
    "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230"
).split()
DS2 = (
    "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234"
).split()

# Rhythm annotation (aux note of a '+' annotation) that means normal sinus rhythm.
NORMAL_RHYTHM = "(N"


def aami_class(symbol: str) -> str | None:
    """The AAMI class of a MIT-BIH beat symbol, or None when the symbol is not a beat."""
    return SYMBOL_TO_AAMI.get(symbol)
