//! The dashboard's CSV downloads (reports, the audit trail, statements): UTF-8 with a
//! byte order mark so Excel reads umlauts; German uses `;` (as German Excel expects),
//! English `,`. Cells a spreadsheet would take for a formula get a leading `'`, since
//! names and places are typed by people.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::i18n::Lang;

pub fn separator(l: Lang) -> char {
    match l {
        Lang::De => ';',
        Lang::En => ',',
    }
}

/// One cell: formula-safe, quoted where it holds the separator, a quote or a line break.
pub fn cell(v: &str, sep: char) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains(sep) || v.contains('"') || v.contains('\n') || v.contains('\r') {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// A CSV document written line by line.
pub struct Csv {
    sep: char,
    out: String,
}

impl Csv {
    pub fn new(l: Lang) -> Self {
        Self {
            sep: separator(l),
            out: String::from("\u{feff}"),
        }
    }

    pub fn line<S: AsRef<str>>(&mut self, fields: impl IntoIterator<Item = S>) {
        let cells: Vec<String> = fields
            .into_iter()
            .map(|f| cell(f.as_ref(), self.sep))
            .collect();
        self.out.push_str(&cells.join(&self.sep.to_string()));
        self.out.push_str("\r\n");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// The download: `text/csv`, saved as `filename`.
pub fn download(body: String, filename: &str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formula_safe() {
        assert_eq!(cell("Amira", ';'), "Amira");
        assert_eq!(cell("a;b", ';'), "\"a;b\"");
        assert_eq!(cell("a\"b", ','), "\"a\"\"b\"");
        assert_eq!(cell("=HYPERLINK(\"x\")", ';'), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("+49 170", ';'), "'+49 170");
        assert_eq!(cell("@Amira", ','), "'@Amira");
        assert_eq!(cell("-1", ';'), "'-1");
        let mut c = Csv::new(Lang::De);
        c.line(["x", "y;z"]);
        assert_eq!(c.finish(), "\u{feff}x;\"y;z\"\r\n");
    }
}
