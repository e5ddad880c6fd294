//! Each setting's values as text: parsed, checked and shown.

use super::*;

/// A type a setting can have: read from the text of a flag, a variable or
/// the config file, and shown by `o1 config`.
pub trait SettingValue: Sized {
    /// `Err` completes the sentence "`key` …".
    fn parse(text: &str) -> Result<Self, String>;
    fn show(&self) -> String;
}

macro_rules! from_str_values {
    ($($ty:ty: $what:literal),*) => {$(
        impl SettingValue for $ty {
            fn parse(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|_| format!("is {text:?}: {}", $what))
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

from_str_values!(u16: "a whole number", u32: "a whole number", usize: "a whole number", f32: "a number", bool: "true or false");

impl SettingValue for String {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl SettingValue for OutputType {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for GpuLayers {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn show(&self) -> String {
        match self {
            GpuLayers::Auto => "auto".into(),
            GpuLayers::All => "all".into(),
            GpuLayers::Count(n) => n.to_string(),
        }
    }
}

macro_rules! value_enum_values {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            fn parse(text: &str) -> Result<Self, String> {
                <$ty as ValueEnum>::from_str(text, true).map_err(|_| {
                    let names: Vec<String> =
                        <$ty>::value_variants().iter().map(|v| v.show()).collect();
                    format!("is {text:?}: {}", names.join(" or "))
                })
            }
            fn show(&self) -> String {
                self.to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            }
        }
    )*};
}

value_enum_values!(KvType, Lookup, OnFull, ReasoningView);

impl SettingValue for Size {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse().map_err(|e: String| format!("is {e}"))
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// What `o1 config`, the config file's check and the flags' help need of a
/// setting, whatever its type.
pub trait AnySetting {
    fn key(&self) -> &'static str;
    fn env(&self) -> &'static str;
    fn help(&self) -> &'static str;
    /// The built-in default as text.
    fn builtin_text(&self) -> String;
    /// The built-in default, if it is a fixed value.
    fn fixed_default(&self) -> Option<String>;
    /// Whether `text` is a valid value.
    fn check(&self, text: &str) -> Result<(), String>;
    /// The value without flags, as text, and where it came from.
    fn effective(&self, settings: &Settings) -> Result<(String, Source), SettingsError>;
}

impl<T: SettingValue> AnySetting for Setting<T> {
    fn key(&self) -> &'static str {
        self.key
    }
    fn env(&self) -> &'static str {
        self.env
    }
    fn help(&self) -> &'static str {
        self.help
    }
    fn builtin_text(&self) -> String {
        match &self.builtin {
            Value(_) => self.fixed_default().unwrap_or_default(),
            Derived(how) => how.to_string(),
        }
    }
    fn fixed_default(&self) -> Option<String> {
        match &self.builtin {
            Value(value) => Some(value().show()),
            Derived(_) => None,
        }
    }
    fn check(&self, text: &str) -> Result<(), String> {
        T::parse(text).and_then(|v| (self.check)(&v))
    }
    fn effective(&self, settings: &Settings) -> Result<(String, Source), SettingsError> {
        let (value, source) = settings.resolve(self, None)?;
        Ok((
            value.map_or_else(|| self.builtin_text(), |v| v.show()),
            source,
        ))
    }
}

/// The setting whose flag is `--flag`, if any.
pub fn for_flag(flag: &str) -> Option<&'static dyn AnySetting> {
    ALL.iter()
        .copied()
        .find(|s| s.key().replace('_', "-") == flag)
}

/// A memory size in bytes, as a user writes it (`1.5G`, `1200M`, `2GB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_size(s).map(Size)
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_multiple_of(1 << 20) {
            write!(f, "{}M", self.0 >> 20)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Parses a size: a number with an optional unit. `K`, `M`, `G`, `T` (and
/// `KiB`, `MiB`, …) are powers of 1024; `KB`, `MB`, `GB`, `TB` powers of 1000;
/// no unit is bytes. `1.5G`, `1200MiB`, `1.2GB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 1.5G, 1200M, 2GB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use K, M, G, KB, MB, GB)"
            ))
        }
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is not a usable size"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    const MIB: u64 = 1 << 20;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1.5G").unwrap(), 1536 * MIB);
        assert_eq!(parse_size("1200MiB").unwrap(), 1200 * MIB);
        assert_eq!(parse_size("1.2GB").unwrap(), 1_200_000_000);
        assert_eq!(parse_size(" 4096 ").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1.2X").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("1e30G").is_err());
    }
}
