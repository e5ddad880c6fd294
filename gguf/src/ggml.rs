//! ggml tensor types and llama.cpp's own quantization arithmetic.
//!
//! Sizes, names and the conversion of f32 rows into any ggml type all come
//! from the ggml library linked through `llama-cpp-sys-2`: o1 never
//! re-implements a quantization format.

use std::ffi::CStr;
use std::fmt;
use std::str::FromStr;

use llama_cpp_sys_2 as sys;

/// A ggml tensor type, as stored in a GGUF tensor info.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(u32);

impl GgmlType {
    pub const F32: Self = Self(sys::GGML_TYPE_F32);
    pub const F16: Self = Self(sys::GGML_TYPE_F16);
    pub const BF16: Self = Self(sys::GGML_TYPE_BF16);
    pub const Q4_0: Self = Self(sys::GGML_TYPE_Q4_0);
    pub const Q4_1: Self = Self(sys::GGML_TYPE_Q4_1);
    pub const Q5_0: Self = Self(sys::GGML_TYPE_Q5_0);
    pub const Q5_1: Self = Self(sys::GGML_TYPE_Q5_1);
    pub const Q8_0: Self = Self(sys::GGML_TYPE_Q8_0);
    pub const Q2_K: Self = Self(sys::GGML_TYPE_Q2_K);
    pub const IQ3_S: Self = Self(sys::GGML_TYPE_IQ3_S);
    pub const Q3_K: Self = Self(sys::GGML_TYPE_Q3_K);
    pub const Q4_K: Self = Self(sys::GGML_TYPE_Q4_K);
    pub const Q5_K: Self = Self(sys::GGML_TYPE_Q5_K);
    pub const Q6_K: Self = Self(sys::GGML_TYPE_Q6_K);
    pub const IQ4_NL: Self = Self(sys::GGML_TYPE_IQ4_NL);
    pub const IQ4_XS: Self = Self(sys::GGML_TYPE_IQ4_XS);

    /// The type with this raw id, if ggml knows it (removed ids have no blocks).
    pub fn from_raw(raw: u32) -> Option<Self> {
        if raw >= sys::GGML_TYPE_COUNT {
            return None;
        }
        // SAFETY: `raw` is below GGML_TYPE_COUNT, so it indexes ggml's type table.
        let block = unsafe { sys::ggml_blck_size(raw) };
        (block > 0).then_some(Self(raw))
    }

    pub fn raw(self) -> u32 {
        self.0
    }

    /// Elements per quantization block (1 for float types).
    pub fn block_size(self) -> u64 {
        // SAFETY: every `GgmlType` holds a valid type id.
        unsafe { sys::ggml_blck_size(self.0) as u64 }
    }

    /// Bytes of one row of `n` elements; `n` must be a multiple of the block size.
    pub fn row_bytes(self, n: u64) -> u64 {
        // SAFETY: as above.
        let block_bytes = unsafe { sys::ggml_type_size(self.0) } as u64;
        n / self.block_size() * block_bytes
    }

    pub fn is_quantized(self) -> bool {
        // SAFETY: as above.
        unsafe { sys::ggml_is_quantized(self.0) }
    }

    pub fn name(self) -> &'static str {
        // SAFETY: ggml returns a static NUL-terminated string for every valid type.
        unsafe { CStr::from_ptr(sys::ggml_type_name(self.0)) }
            .to_str()
            .unwrap_or("?")
    }

    /// Converts `rows` rows of `n_per_row` f32 values into this type, writing
    /// `rows * row_bytes(n_per_row)` bytes to `dst`. Rows are independent,
    /// so any split of a tensor into row blocks gives the same bytes.
    /// `importance` (one weight per column, an importance matrix's row for
    /// this tensor) steers the rounding of the types that use it.
    pub fn quantize_rows(
        self,
        src: &[f32],
        dst: &mut [u8],
        n_per_row: usize,
        importance: Option<&[f32]>,
    ) {
        assert!(n_per_row > 0 && src.len().is_multiple_of(n_per_row));
        if let Some(w) = importance {
            assert_eq!(w.len(), n_per_row, "importance row length");
        }
        let rows = src.len() / n_per_row;
        let expected = rows as u64 * self.row_bytes(n_per_row as u64);
        assert_eq!(dst.len() as u64, expected, "quantize buffer size");
        assert_eq!(n_per_row as u64 % self.block_size(), 0);
        // SAFETY: sizes checked above, the importance row has n_per_row values;
        // every type o1 writes can be made without one.
        let written = unsafe {
            sys::ggml_quantize_chunk(
                self.0,
                src.as_ptr(),
                dst.as_mut_ptr().cast(),
                0,
                rows as i64,
                n_per_row as i64,
                importance.map_or(std::ptr::null(), |w| w.as_ptr()),
            )
        };
        assert_eq!(written as u64, expected, "ggml_quantize_chunk size");
    }
}

impl fmt::Debug for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The output types `o1 convert --type` offers, named as llama.cpp names them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum OutputType {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q6K,
    Q5KM,
    Q4KM,
    Q4KS,
    Q4_0,
    Iq4Xs,
    Q3KL,
    Q3KM,
    Iq3M,
}

impl OutputType {
    /// Largest first.
    pub const ALL: [OutputType; 13] = [
        Self::F32,
        Self::F16,
        Self::Bf16,
        Self::Q8_0,
        Self::Q6K,
        Self::Q5KM,
        Self::Q4KM,
        Self::Q4KS,
        Self::Q4_0,
        Self::Iq4Xs,
        Self::Q3KL,
        Self::Q3KM,
        Self::Iq3M,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::Q8_0 => "q8_0",
            Self::Q6K => "q6_k",
            Self::Q5KM => "q5_k_m",
            Self::Q4KM => "q4_k_m",
            Self::Q4KS => "q4_k_s",
            Self::Q4_0 => "q4_0",
            Self::Iq4Xs => "iq4_xs",
            Self::Q3KL => "q3_k_l",
            Self::Q3KM => "q3_k_m",
            Self::Iq3M => "iq3_m",
        }
    }

    /// llama.cpp's `llama_ftype`, stored as `general.file_type`.
    pub fn ftype(self) -> sys::llama_ftype {
        match self {
            Self::F32 => sys::LLAMA_FTYPE_ALL_F32,
            Self::F16 => sys::LLAMA_FTYPE_MOSTLY_F16,
            Self::Bf16 => sys::LLAMA_FTYPE_MOSTLY_BF16,
            Self::Q8_0 => sys::LLAMA_FTYPE_MOSTLY_Q8_0,
            Self::Q6K => sys::LLAMA_FTYPE_MOSTLY_Q6_K,
            Self::Q5KM => sys::LLAMA_FTYPE_MOSTLY_Q5_K_M,
            Self::Q4KM => sys::LLAMA_FTYPE_MOSTLY_Q4_K_M,
            Self::Q4KS => sys::LLAMA_FTYPE_MOSTLY_Q4_K_S,
            Self::Q4_0 => sys::LLAMA_FTYPE_MOSTLY_Q4_0,
            Self::Iq4Xs => sys::LLAMA_FTYPE_MOSTLY_IQ4_XS,
            Self::Q3KL => sys::LLAMA_FTYPE_MOSTLY_Q3_K_L,
            Self::Q3KM => sys::LLAMA_FTYPE_MOSTLY_Q3_K_M,
            Self::Iq3M => sys::LLAMA_FTYPE_MOSTLY_IQ3_M,
        }
    }

    /// The type most 2-D weights get (llama.cpp's `llama_ftype_get_default_type`).
    pub fn default_type(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Bf16 => GgmlType::BF16,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q6K => GgmlType::Q6_K,
            Self::Q5KM => GgmlType::Q5_K,
            Self::Q4KM | Self::Q4KS => GgmlType::Q4_K,
            Self::Q4_0 => GgmlType::Q4_0,
            Self::Iq4Xs => GgmlType::IQ4_XS,
            Self::Q3KL | Self::Q3KM => GgmlType::Q3_K,
            Self::Iq3M => GgmlType::IQ3_S,
        }
    }

    pub fn is_quantized(self) -> bool {
        self.default_type().is_quantized()
    }

    /// Types of 5 bits per weight and fewer: an importance matrix measurably
    /// improves them, so `o1 convert` calibrates them unless told not to.
    pub fn calibrated_by_default(self) -> bool {
        !matches!(
            self,
            Self::F32 | Self::F16 | Self::Bf16 | Self::Q8_0 | Self::Q6K
        )
    }
}

impl fmt::Display for OutputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OutputType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|t| t.name() == lower)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|t| t.name()).collect();
                format!("unknown type `{s}` (choose one of {})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_sizes_come_from_ggml() {
        assert_eq!(GgmlType::F32.row_bytes(10), 40);
        assert_eq!(GgmlType::BF16.row_bytes(10), 20);
        assert_eq!(GgmlType::Q8_0.block_size(), 32);
        assert_eq!(GgmlType::Q8_0.row_bytes(64), 2 * 34);
        assert_eq!(GgmlType::Q4_K.block_size(), 256);
        assert_eq!(GgmlType::Q4_K.row_bytes(512), 2 * 144);
        assert_eq!(GgmlType::Q4_K.name(), "q4_K");
        assert!(GgmlType::Q6_K.is_quantized());
        assert!(!GgmlType::F16.is_quantized());
        assert!(
            GgmlType::from_raw(4).is_none(),
            "removed Q4_2 has no blocks"
        );
        assert!(GgmlType::from_raw(100_000).is_none());
        assert_eq!(GgmlType::from_raw(12), Some(GgmlType::Q4_K));
    }

    #[test]
    fn output_type_names_round_trip() {
        for t in OutputType::ALL {
            assert_eq!(t.name().parse::<OutputType>().unwrap(), t);
        }
        assert_eq!("Q4_K_M".parse::<OutputType>().unwrap(), OutputType::Q4KM);
        let err = "q2_k".parse::<OutputType>().unwrap_err();
        assert!(err.contains("q4_k_m"), "{err}");
    }

    #[test]
    fn quantize_rows_is_row_independent() {
        let n = 256;
        let src: Vec<f32> = (0..4 * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let row = GgmlType::Q4_K.row_bytes(n as u64) as usize;
        let mut whole = vec![0u8; 4 * row];
        GgmlType::Q4_K.quantize_rows(&src, &mut whole, n, None);
        let mut parts = vec![0u8; 4 * row];
        for r in 0..4 {
            GgmlType::Q4_K.quantize_rows(
                &src[r * n..(r + 1) * n],
                &mut parts[r * row..(r + 1) * row],
                n,
                None,
            );
        }
        assert_eq!(whole, parts);
        assert!(whole.iter().any(|&b| b != 0));
    }
}
