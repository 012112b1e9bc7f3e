//! Output formatting as hyperctl 1.1 prints it: tables as Go's tabwriter lays them out (minimum
//! cell width 20, padding 3; the last column unpadded), sizes as go-units' HumanSize, times
//! as `2006-01-02 15:04:05` (UTC here).

pub fn table(rows: &[Vec<String>]) -> String {
    const MIN_WIDTH: usize = 20;
    const PADDING: usize = 3;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter(|r| c + 1 < r.len())
                .map(|r| r[c].chars().count() + PADDING)
                .max()
                .unwrap_or(0)
                .max(MIN_WIDTH)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            if c + 1 < row.len() {
                out.push_str(&format!("{cell:<width$}", width = widths[c]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

/// go-units HumanSize: decimal units, 4 significant digits.
pub fn human_size(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = if v < 1.0 {
        1
    } else {
        (v.log10().floor() as usize) + 1
    };
    let decimals = 4usize.saturating_sub(int_digits);
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s} {}", UNITS[i])
}

/// Unix seconds as `YYYY-MM-DD hh:mm:ss` UTC.
pub fn time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_layout() {
        let t = table(&[
            vec![
                "POD ID".into(),
                "POD Name".into(),
                "VM name".into(),
                "Status".into(),
            ],
            vec![
                "test".into(),
                "test".into(),
                "vm-LTppyMtoxV".into(),
                "running".into(),
            ],
        ]);
        assert_eq!(
            t,
            "POD ID              POD Name            VM name             Status\n\
             test                test                vm-LTppyMtoxV       running\n"
        );
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(human_size(1_093_000.0), "1.093 MB");
        assert_eq!(human_size(1_982_286.0), "1.982 MB");
        assert_eq!(human_size(512.0), "512 B");
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_700_000_000), "2023-11-14 22:13:20");
    }
}
