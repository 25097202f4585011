//! Maps CSV record numbers to the 1-based line where each record starts
//! (records may span lines inside quoted fields).

/// Start line of every record (index 0 is the header) of RFC 4180 CSV `bytes`.
/// Blank lines between records are skipped, like the CSV parser does.
pub fn record_start_lines(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut line = 1usize;
    let mut in_quotes = false;
    let mut at_record_start = true;
    for &b in bytes {
        if at_record_start && b != b'\n' && b != b'\r' {
            starts.push(line);
            at_record_start = false;
        }
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' => {
                line += 1;
                if !in_quotes {
                    at_record_start = true;
                }
            }
            _ => {}
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_quoted_records() {
        let csv = b"prompt,a\n\"x\ny\",True\n\"he said \"\"hi\"\"\nok\",False\nplain,True\n";
        assert_eq!(record_start_lines(csv), vec![1, 2, 4, 6]);
    }
}
