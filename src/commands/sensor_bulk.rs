//! Bulk sensor streaming (the reference's sensor_bulk.c), shared by the
//! accelerometers, load-cell ADCs, eddy-current and angle sensors: samples
//! are packed into `sensor_bulk_data` messages with a sequence number, and
//! `sensor_bulk_status` tells the host what is buffered and what may have
//! been lost.

use klipper_protocol::format::Arg;

use crate::command::Response;
use crate::mcu::Mcu;

pub static SENSOR_BULK_DATA: Response =
    Response::new("sensor_bulk_data oid=%c sequence=%hu data=%*s");
pub static SENSOR_BULK_STATUS: Response = Response::new(
    "sensor_bulk_status oid=%c clock=%u query_ticks=%u next_sequence=%hu buffered=%u possible_overflows=%hu",
);

/// Bytes of samples one `sensor_bulk_data` message carries.
pub const BULK_DATA_SIZE: usize = 51;

#[derive(Debug, Clone, Copy)]
pub struct SensorBulk {
    pub sequence: u16,
    pub possible_overflows: u16,
    pub data_count: u8,
    pub data: [u8; BULK_DATA_SIZE],
}

impl Default for SensorBulk {
    fn default() -> Self {
        SensorBulk {
            sequence: 0,
            possible_overflows: 0,
            data_count: 0,
            data: [0; BULK_DATA_SIZE],
        }
    }
}

impl SensorBulk {
    pub fn reset(&mut self) {
        self.sequence = 0;
        self.possible_overflows = 0;
        self.data_count = 0;
    }

    /// Room left for samples in the current message.
    pub fn space(&self) -> usize {
        BULK_DATA_SIZE - self.data_count as usize
    }

    /// Append sample bytes (the caller checks [`Self::space`] first).
    pub fn push(&mut self, bytes: &[u8]) {
        let n = self.data_count as usize;
        self.data[n..n + bytes.len()].copy_from_slice(bytes);
        self.data_count += bytes.len() as u8;
    }

    /// Send the samples collected so far as one message.
    pub fn report(&mut self, mcu: &mut Mcu, oid: u8) {
        let n = self.data_count as usize;
        let args = [
            Arg::Int(oid as u32),
            Arg::Int(self.sequence as u32),
            Arg::Bytes(&self.data[..n]),
        ];
        mcu.send(&SENSOR_BULK_DATA, &args);
        self.data_count = 0;
        self.sequence = self.sequence.wrapping_add(1);
    }

    /// Send `sensor_bulk_status`: `time1` when the query began,
    /// `query_ticks` how long it took, `fifo` bytes still in the chip.
    pub fn status(&self, mcu: &mut Mcu, oid: u8, time1: u32, query_ticks: u32, fifo: u32) {
        let args = [
            Arg::Int(oid as u32),
            Arg::Int(time1),
            Arg::Int(query_ticks),
            Arg::Int(self.sequence as u32),
            Arg::Int(self.data_count as u32 + fifo),
            Arg::Int(self.possible_overflows as u32),
        ];
        mcu.send(&SENSOR_BULK_STATUS, &args);
    }
}
