//! The objects the host configures, owned by type: each command family
//! keeps its objects in a table of its own type here, and `allocate_oids`'
//! oid table maps an oid to a type tag and an index in that type's table
//! (the reference's `oid_alloc(oid, type, size)`, whose type tag is the
//! config function's address; here it is the object type's `TypeId`).
//! Nothing below the families names them.

use std::any::{Any, TypeId};

use crate::shutdown::Shutdown;

pub const CANT_ASSIGN_OID: Shutdown = Shutdown("Can't assign oid");
pub const INVALID_OID_TYPE: Shutdown = Shutdown("Invalid oid type");

/// One table per object type, each a `Vec<T>` behind `dyn Any`.
#[derive(Default)]
pub struct Objects {
    tables: Vec<(TypeId, Box<dyn Any>)>,
}

impl Objects {
    /// The table of `T`, if any `T` was ever added.
    #[inline]
    fn find<T: 'static>(&self) -> Option<usize> {
        let t = TypeId::of::<Vec<T>>();
        self.tables.iter().position(|e| e.0 == t)
    }

    /// Add `obj` to its type's table (configuration time: may allocate);
    /// returns its index.
    pub fn push<T: 'static>(&mut self, obj: T) -> u16 {
        let i = match self.find::<T>() {
            Some(i) => i,
            None => {
                self.tables
                    .push((TypeId::of::<Vec<T>>(), Box::new(Vec::<T>::new())));
                self.tables.len() - 1
            }
        };
        let v = self.tables[i]
            .1
            .downcast_mut::<Vec<T>>()
            .expect("a table holds its own type");
        v.push(obj);
        (v.len() - 1) as u16
    }

    /// Every object of type `T` (empty when none); never allocates.
    #[inline]
    pub fn of<T: 'static>(&mut self) -> &mut [T] {
        let t = TypeId::of::<Vec<T>>();
        for e in self.tables.iter_mut() {
            if e.0 == t {
                let p = &mut *e.1 as *mut dyn Any as *mut Vec<T>;
                // SAFETY: the entry's tag is `Vec<T>`'s TypeId, set by
                // `push` with the box's own type, so the box holds a
                // `Vec<T>` (what `downcast_mut` checks, without its call
                // through the vtable on this hot path).
                return unsafe { &mut *p };
            }
        }
        &mut []
    }

    /// Every object of type `T`, read-only.
    #[inline]
    pub fn get<T: 'static>(&self) -> &[T] {
        match self
            .find::<T>()
            .and_then(|i| self.tables[i].1.downcast_ref::<Vec<T>>())
        {
            Some(v) => v,
            None => &[],
        }
    }

    /// Forget every object (a new configuration).
    pub fn clear(&mut self) {
        self.tables.clear();
    }
}

/// `allocate_oids`' table: for each oid, the type and table index of the
/// object it names.
#[derive(Debug, Default, Clone)]
pub struct OidTable {
    slots: Vec<Option<(TypeId, u16)>>,
}

impl OidTable {
    pub fn new(count: usize) -> OidTable {
        OidTable {
            slots: vec![None; count],
        }
    }

    /// Claim `oid` for the object of type `T` at `index`.
    pub fn alloc<T: 'static>(&mut self, oid: u32, index: u16) -> Result<(), Shutdown> {
        match self.slots.get_mut(oid as usize) {
            Some(slot @ None) => {
                *slot = Some((TypeId::of::<T>(), index));
                Ok(())
            }
            _ => Err(CANT_ASSIGN_OID),
        }
    }

    /// The index of the `T` that `oid` names.
    #[inline]
    pub fn lookup<T: 'static>(&self, oid: u32) -> Result<u16, Shutdown> {
        match self.slots.get(oid as usize) {
            Some(Some((t, i))) if *t == TypeId::of::<T>() => Ok(*i),
            _ => Err(INVALID_OID_TYPE),
        }
    }

    /// Free `oid` again (a configuration that failed after claiming it).
    pub fn release(&mut self, oid: u32) {
        if let Some(slot) = self.slots.get_mut(oid as usize) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A(u32);
    struct B;

    #[test]
    fn oids_are_type_checked() {
        let mut objs = Objects::default();
        let mut oids = OidTable::new(4);
        let i = objs.push(A(7));
        oids.alloc::<A>(1, i).unwrap();
        assert_eq!(oids.alloc::<B>(1, 0), Err(CANT_ASSIGN_OID));
        assert_eq!(oids.alloc::<B>(9, 0), Err(CANT_ASSIGN_OID));
        assert_eq!(oids.lookup::<B>(1), Err(INVALID_OID_TYPE));
        let i = oids.lookup::<A>(1).unwrap();
        assert_eq!(objs.of::<A>()[i as usize].0, 7);
        assert!(objs.get::<B>().is_empty());
        oids.release(1);
        assert_eq!(oids.lookup::<A>(1), Err(INVALID_OID_TYPE));
    }
}
