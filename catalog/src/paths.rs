//! Object-store paths of catalog objects. Every catalog path is built here.

use object_store::path::Path;

const DIR: &str = "catalog";

/// A path of the catalog's own objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogPath {
    /// The folder holding every version.
    Dir,
    /// One version: `catalog/v00000000000000000042.json`.
    Version(u64),
}

impl CatalogPath {
    pub fn dir() -> Self {
        Self::Dir
    }

    pub fn version(v: u64) -> Self {
        Self::Version(v)
    }

    pub fn to_object_path(&self) -> Path {
        match self {
            Self::Dir => Path::from(DIR),
            Self::Version(v) => Path::from(format!("{DIR}/v{v:020}.json")),
        }
    }

    /// The version number of a catalog object path, `None` for anything else.
    pub fn parse_version(path: &Path) -> Option<u64> {
        let mut parts = path.parts();
        if parts.next()?.as_ref() != DIR {
            return None;
        }
        let name = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let digits = name.as_ref().strip_prefix('v')?.strip_suffix(".json")?;
        if digits.len() != 20 {
            return None;
        }
        digits.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_paths_round_trip() {
        let p = CatalogPath::version(42).to_object_path();
        assert_eq!(p.as_ref(), "catalog/v00000000000000000042.json");
        assert_eq!(CatalogPath::parse_version(&p), Some(42));
        assert_eq!(
            CatalogPath::parse_version(&Path::from("catalog/x.json")),
            None
        );
        assert_eq!(
            CatalogPath::parse_version(&Path::from("other/v00000000000000000042.json")),
            None
        );
    }
}
