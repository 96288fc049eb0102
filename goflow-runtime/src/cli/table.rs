//! Text tables with aligned columns.

use std::io::{self, Write};

/// Writes `header` and `rows` as left-aligned columns two spaces apart.
pub(super) fn write(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["extract".to_owned(), "success".to_owned()],
            vec!["a".to_owned(), "upstream_failed".to_owned()],
        ];
        super::write(&mut out, &["TASK", "STATE"], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "TASK     STATE\nextract  success\na        upstream_failed\n"
        );
    }
}
