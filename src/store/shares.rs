//! Share streams: a reservation's shares read from batch files, checked and expanded, once.

use super::*;

impl Store {
    /// Streams this party's shares of a consumed reservation to `out` as a share stream.
    ///
    /// # Errors
    /// [`StoreError::NotReserved`] unless the reservation is consumed here; IO and format
    /// errors from the batch files (a damaged chunk is an error, never wrong data).
    pub fn write_shares<W: Write>(&self, res: &Reservation, out: W) -> Result<W> {
        if res.state != ReservationState::Consumed {
            return Err(StoreError::NotReserved {
                checkout: res.checkout.clone(),
                state: res.state,
                to: "downloaded",
            });
        }
        self.stream_shares(res, out)
    }

    /// This party's share stream of a reservation, as [`Store::write_shares`] writes it.
    pub(super) fn share_header(&self, res: &Reservation) -> ShareHeader {
        ShareHeader {
            pool: res.pool,
            parties: self.identity.parties,
            party: self.identity.party,
            checkout: res.checkout.clone(),
            ranges: res.ranges.clone(),
        }
    }

    /// Bytes of a reservation's share stream.
    pub fn share_stream_len(&self, res: &Reservation) -> u64 {
        let h = self.share_header(res);
        h.encode().len() as u64 + h.items() * h.record_bytes() as u64 + 4
    }

    /// Writes the share stream whatever the reservation's state (callers decide when).
    pub(super) fn stream_shares<W: Write>(&self, res: &Reservation, out: W) -> Result<W> {
        let header = self.share_header(res);
        let wio = |e: io::Error| StoreError::Io {
            op: "write shares",
            path: PathBuf::from("<output>"),
            source: e,
        };
        let mut w = ShareWriter::new(out, &header).map_err(wio)?;
        // Chunks are read a group at a time (one read) and expanded in parallel, then written
        // in order; memory stays at a group's worth whatever the checkout's size.
        const GROUP: u64 = 64;
        let mut files = Vec::with_capacity(res.ranges.len());
        for r in &res.ranges {
            let path = self.batch_path(&r.batch);
            let file = File::open(&path).map_err(io_err("open", &path))?;
            let bh = self.read_header(&file, &path, r, res.pool)?;
            files.push((path, file, bh));
        }
        // Sized once for the largest group this checkout reads, so it never reallocates (and
        // leaves no unzeroized copy behind), and no larger: it is zeroed when dropped.
        let max_group = res
            .ranges
            .iter()
            .zip(&files)
            .map(|(r, (_, _, bh))| {
                let ci = bh.chunk_items as u64;
                let chunks = (r.first + r.count - 1) / ci - r.first / ci + 1;
                (chunks.min(GROUP) * (bh.chunk_offset(1) - bh.chunk_offset(0))) as usize
            })
            .max()
            .unwrap_or(0);
        let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(max_group));
        for (r, (path, file, bh)) in res.ranges.iter().zip(&files) {
            let ci = bh.chunk_items as u64;
            let end = r.first + r.count;
            let (first_chunk, last_chunk) = (r.first / ci, (end - 1) / ci);
            let mut group = first_chunk;
            while group <= last_chunk {
                let g_end = (group + GROUP).min(last_chunk + 1);
                let off = bh.chunk_offset(group);
                let len =
                    (bh.chunk_offset(g_end - 1) + bh.chunk_bytes(g_end - 1) as u64 - off) as usize;
                raw.resize(len, 0);
                file.read_exact_at(&mut raw, off)
                    .map_err(io_err("read", path))?;
                for records in bh.expand_chunks(&raw, group..g_end, r.first..end)? {
                    w.write_records(&records).map_err(wio)?;
                }
                group = g_end;
            }
        }
        w.finish().map_err(wio)
    }

    /// Checks the header and every chunk checksum behind a reservation's ranges.
    ///
    /// # Errors
    /// The first IO or [`FormatError`] found.
    pub fn check_ranges(&self, res: &Reservation) -> Result<()> {
        let mut chunk = zeroize::Zeroizing::new(Vec::new());
        for r in &res.ranges {
            let path = self.batch_path(&r.batch);
            let file = File::open(&path).map_err(io_err("open", &path))?;
            let bh = self.read_header(&file, &path, r, res.pool)?;
            let ci = bh.chunk_items as u64;
            for c in r.first / ci..(r.first + r.count).div_ceil(ci) {
                chunk.resize(bh.chunk_bytes(c), 0);
                file.read_exact_at(&mut chunk, bh.chunk_offset(c))
                    .map_err(io_err("read", &path))?;
                bh.decode_chunk(c, &chunk)?;
            }
        }
        Ok(())
    }

    /// Reads and checks a batch file's header against the range and pool expected of it.
    pub(super) fn read_header(
        &self,
        file: &File,
        path: &Path,
        r: &ShareRange,
        pool: PoolSpec,
    ) -> Result<BatchHeader> {
        let bh = super::read_batch_header(file, path)?;
        let me = &self.identity;
        if bh.batch != r.batch
            || bh.pool != pool
            || bh.party != me.party
            || bh.parties != me.parties
            || r.first + r.count > bh.items
        {
            return Err(StoreError::Corrupt(format!(
                "batch file {} does not match its metadata",
                path.display()
            )));
        }
        Ok(bh)
    }

    /// Consume, stream and erase in one call: the whole of a download at this party.
    ///
    /// # Errors
    /// As [`Store::consume`] and [`Store::write_shares`].
    pub fn take<W: Write>(&self, checkout: &str, consumer: &str, out: W) -> Result<W> {
        if let Some(res) = self.reservation(checkout)? {
            // A damaged file is found before the items are marked consumed, so it costs an
            // error, not the material.
            if res.state == ReservationState::Reserved {
                self.check_ranges(&res)?;
            }
        }
        let res = self.consume(checkout, consumer)?;
        let out = self.write_shares(&res, out);
        // Erase whether or not the stream succeeded: the items are consumed either way.
        self.erase_reservation(&res)?;
        out
    }

    /// Records that a consumed reservation's shares have been streamed out (or the stream
    /// failed), so its chunks may be erased; [`Store::erase_due`] or
    /// [`Store::erase_reservation`] then erases them.
    pub fn end_stream(&self, res: &Reservation) {
        let mut streaming = self.streaming.lock().unwrap_or_else(|p| p.into_inner());
        for r in &res.ranges {
            if let Some(i) = streaming.iter().position(|s| s == r) {
                streaming.swap_remove(i);
            }
        }
    }
}
