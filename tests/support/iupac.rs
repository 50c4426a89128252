//! IUPAC pattern letters spelled out for reference scans: which bases a letter accepts, and its
//! complement. Written out letter by letter, independently of the search kernel's tables.

/// Bases a pattern letter accepts, spelled out; `N` accepts any byte.
pub fn accepts(code: u8, base: u8) -> bool {
    let code = code.to_ascii_uppercase();
    if code == b'N' {
        return true;
    }
    let base = match base.to_ascii_uppercase() {
        b'U' => b'T',
        other => other,
    };
    let set: &[u8] = match code {
        b'A' => b"A",
        b'C' => b"C",
        b'G' => b"G",
        b'T' | b'U' => b"T",
        b'R' => b"AG",
        b'Y' => b"CT",
        b'S' => b"CG",
        b'W' => b"AT",
        b'K' => b"GT",
        b'M' => b"AC",
        b'B' => b"CGT",
        b'D' => b"AGT",
        b'H' => b"ACT",
        b'V' => b"ACG",
        _ => b"",
    };
    set.contains(&base)
}

/// Complement of a pattern letter (upper case), IUPAC codes included.
pub fn complement(code: u8) -> u8 {
    match code.to_ascii_uppercase() {
        b'A' => b'T',
        b'T' | b'U' => b'A',
        b'C' => b'G',
        b'G' => b'C',
        b'R' => b'Y',
        b'Y' => b'R',
        b'K' => b'M',
        b'M' => b'K',
        b'B' => b'V',
        b'V' => b'B',
        b'D' => b'H',
        b'H' => b'D',
        other => other,
    }
}
