//! Plain-text tables for human-facing output.

/// Prints `rows` under `headers`, columns padded to their widest cell. The
/// last column is not padded, so a long error message there costs nothing.
pub(crate) fn print(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, width))| {
                if column + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// An optional number, or "-" when the node does not know it.
pub(crate) fn or_dash(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |value| value.to_string())
}
