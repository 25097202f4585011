//! Compact binary records spilled to temporary partition files by the service-log join
//! (length-prefixed strings, little-endian numbers). Written and read by the same process
//! only, so there is no versioning.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::TrainError;

/// Buffer of each partition file reader/writer (K of them may be open at once).
pub const BUFFER_BYTES: usize = 32 * 1024;

/// Writes records into one partition file.
pub struct SpillWriter {
    path: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
}

impl SpillWriter {
    pub fn create(path: &Path) -> Result<SpillWriter, TrainError> {
        let file = File::create(path).map_err(TrainError::io(path))?;
        Ok(SpillWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(BUFFER_BYTES, file),
            buf: Vec::with_capacity(256),
        })
    }

    /// Appends one record built by `f` (the record is framed by its byte length).
    pub fn record(&mut self, f: impl FnOnce(&mut Encoder<'_>)) -> Result<(), TrainError> {
        self.buf.clear();
        f(&mut Encoder(&mut self.buf));
        let len = u32::try_from(self.buf.len()).map_err(|_| TrainError::BadInput {
            path: self.path.clone(),
            message: format!("spilled record of {} bytes is too large", self.buf.len()),
        })?;
        self.out
            .write_all(&len.to_le_bytes())
            .and_then(|()| self.out.write_all(&self.buf))
            .map_err(TrainError::io(&self.path))
    }

    pub fn finish(mut self) -> Result<(), TrainError> {
        self.out.flush().map_err(TrainError::io(&self.path))
    }
}

/// Field encoder of one record.
pub struct Encoder<'a>(&'a mut Vec<u8>);

impl Encoder<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub fn opt_f64(&mut self, v: Option<f64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.f64(v);
            }
            None => self.u8(0),
        }
    }

    pub fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }
}

/// Reads the records of one partition file in the order they were written.
pub struct SpillReader {
    path: PathBuf,
    input: BufReader<File>,
    buf: Vec<u8>,
}

impl SpillReader {
    pub fn open(path: &Path) -> Result<SpillReader, TrainError> {
        let file = File::open(path).map_err(TrainError::io(path))?;
        Ok(SpillReader {
            path: path.to_path_buf(),
            input: BufReader::with_capacity(BUFFER_BYTES, file),
            buf: Vec::with_capacity(256),
        })
    }

    /// The next record (None at the end of the file).
    pub fn next_record(&mut self) -> Result<Option<Decoder<'_>>, TrainError> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < len.len() {
            let n = self
                .input
                .read(&mut len[got..])
                .map_err(TrainError::io(&self.path))?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(self.corrupt());
            }
            got += n;
        }
        self.buf.resize(u32::from_le_bytes(len) as usize, 0);
        self.input
            .read_exact(&mut self.buf)
            .map_err(TrainError::io(&self.path))?;
        Ok(Some(Decoder {
            path: &self.path,
            rest: &self.buf,
        }))
    }

    fn corrupt(&self) -> TrainError {
        TrainError::BadInput {
            path: self.path.clone(),
            message: "truncated temporary partition file".into(),
        }
    }
}

/// Field decoder of one record (fields in the order they were encoded).
pub struct Decoder<'a> {
    path: &'a Path,
    rest: &'a [u8],
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], TrainError> {
        if self.rest.len() < n {
            return Err(TrainError::BadInput {
                path: self.path.to_path_buf(),
                message: "corrupt record in temporary partition file".into(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, TrainError> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64, TrainError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    pub fn f64(&mut self) -> Result<f64, TrainError> {
        Ok(f64::from_bits(self.u64()?))
    }

    pub fn opt_f64(&mut self) -> Result<Option<f64>, TrainError> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.f64()?),
        })
    }

    pub fn str(&mut self) -> Result<String, TrainError> {
        let n = usize::try_from(self.u64()?).map_err(|_| self.corrupt())?;
        let bytes = self.take(n)?.to_vec();
        String::from_utf8(bytes).map_err(|_| self.corrupt())
    }

    pub fn opt_str(&mut self) -> Result<Option<String>, TrainError> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.str()?),
        })
    }

    fn corrupt(&self) -> TrainError {
        TrainError::BadInput {
            path: self.path.to_path_buf(),
            message: "corrupt record in temporary partition file".into(),
        }
    }
}

/// Stable 64-bit hash (FNV-1a with a final avalanche) used to pick a partition.
pub fn hash64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("part");
        let mut w = SpillWriter::create(&p).unwrap();
        w.record(|e| {
            e.u8(2);
            e.str("héllo");
            e.opt_str(None);
            e.opt_f64(Some(0.25));
            e.u64(7);
        })
        .unwrap();
        w.record(|e| e.opt_str(Some(""))).unwrap();
        w.finish().unwrap();
        let mut r = SpillReader::open(&p).unwrap();
        let mut d = r.next_record().unwrap().unwrap();
        assert_eq!(d.u8().unwrap(), 2);
        assert_eq!(d.str().unwrap(), "héllo");
        assert_eq!(d.opt_str().unwrap(), None);
        assert_eq!(d.opt_f64().unwrap(), Some(0.25));
        assert_eq!(d.u64().unwrap(), 7);
        assert!(d.u8().is_err());
        let mut d = r.next_record().unwrap().unwrap();
        assert_eq!(d.opt_str().unwrap().as_deref(), Some(""));
        assert!(r.next_record().unwrap().is_none());
    }
}
