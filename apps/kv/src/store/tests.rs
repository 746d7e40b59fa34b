use super::*;
use crate::slabs::PAGE_SIZE;

fn store(bytes: usize) -> Store {
    Store::new(StoreConfig {
        stripes: 1,
        ..StoreConfig::new(bytes, 1024 * 1024)
    })
}

#[test]
fn set_get_replace_and_cas() {
    let s = store(1 << 26);
    assert!(matches!(
        s.store(SetMode::Set, b"k", 5, 0, b"v1", 10),
        StoreOutcome::Stored(_)
    ));
    let (v, cas) = s.get(b"k", 10, |i| (i.value.to_vec(), i.cas)).unwrap();
    assert_eq!(v, b"v1");
    assert_eq!(
        s.store(SetMode::Cas(cas + 1), b"k", 0, 0, b"x", 10),
        StoreOutcome::Exists
    );
    assert!(matches!(
        s.store(SetMode::Cas(cas), b"k", 0, 0, b"x", 10),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(
        s.store(SetMode::Add, b"k", 0, 0, b"y", 10),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.store(SetMode::Replace, b"z", 0, 0, b"y", 10),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.store(SetMode::Cas(1), b"z", 0, 0, b"y", 10),
        StoreOutcome::NotFound
    );
    let st = s.stats();
    assert_eq!(st.classes.cas_hits, 1);
    assert_eq!(st.classes.cas_badval, 1);
    assert_eq!(st.classes.get_hits, 1);
}

#[test]
fn lru_evicts_the_coldest_of_the_class_and_keeps_the_bound() {
    // 2 MiB: class 1 gets its first page and a second one, then memory is full.
    let s = store(2 * PAGE_SIZE);
    let per_page = s.slabs().classes().per_page(1) as usize;
    for i in 0..2 * per_page {
        let k = format!("k{i:06}");
        assert!(matches!(
            s.store(SetMode::Set, k.as_bytes(), 0, 0, b"x", 5),
            StoreOutcome::Stored(_)
        ));
    }
    // A read more than a minute later refreshes k000000, so k000001 is the coldest.
    assert!(s.get(b"k000000", 100, |_| ()).is_some());
    s.store(SetMode::Set, b"new", 0, 0, b"x", 100);
    assert!(s.get(b"k000000", 100, |_| ()).is_some());
    assert!(s.get(b"k000001", 100, |_| ()).is_none());
    let st = s.stats();
    assert_eq!(st.classes.evicted, 1);
    assert_eq!(st.total_malloced, 2 * PAGE_SIZE as u64);
}

#[test]
fn expired_items_are_reused_before_memory_grows() {
    let s = store(64 * PAGE_SIZE);
    let big = vec![b'B'; 66560];
    for i in 0..10 {
        s.store(SetMode::Set, format!("key{i}").as_bytes(), 0, 12, &big, 10);
    }
    let before = s.stats().total_malloced;
    for i in 10..30 {
        s.store(SetMode::Set, format!("key{i}").as_bytes(), 0, 0, &big, 13);
    }
    let st = s.stats();
    // 12 chunks per page of class 31: 20 live items need 2 pages, not 3.
    assert_eq!(before, PAGE_SIZE as u64);
    assert_eq!(st.total_malloced, 2 * PAGE_SIZE as u64);
    assert_eq!(st.classes.reclaimed, 10);
    assert_eq!(st.curr_items, 20);
}

#[test]
fn delta_wraps_floors_and_pads_in_place() {
    let s = store(1 << 26);
    s.store(SetMode::Set, b"n", 0, 0, b"18446744073709551615", 1);
    assert!(matches!(
        s.delta(b"n", true, 2, 0, 1),
        DeltaOutcome::Value(1, _)
    ));
    assert_eq!(
        s.get(b"n", 1, |i| i.value.to_vec()).unwrap(),
        b"1                   "
    );
    assert!(matches!(
        s.delta(b"n", false, 5, 0, 1),
        DeltaOutcome::Value(0, _)
    ));
    s.store(SetMode::Set, b"t", 0, 0, b"abc", 1);
    assert_eq!(s.delta(b"t", true, 1, 0, 1), DeltaOutcome::NonNumeric);
    assert_eq!(s.delta(b"u", true, 1, 0, 1), DeltaOutcome::NotFound);
    s.store(SetMode::Set, b"g", 0, 0, b"9", 1);
    assert!(matches!(
        s.delta(b"g", true, 1, 0, 1),
        DeltaOutcome::Value(10, _)
    ));
    assert_eq!(s.get(b"g", 1, |i| i.value.to_vec()).unwrap(), b"10");
}

#[test]
fn expiry_and_lazy_flush() {
    let s = store(1 << 26);
    s.store(SetMode::Set, b"a", 0, 12, b"1", 10);
    assert!(s.get(b"a", 11, |_| ()).is_some());
    assert!(s.get(b"a", 12, |_| ()).is_none());
    assert_eq!(s.stats().get_expired, 1);
    s.store(SetMode::Set, b"b", 0, 0, b"1", 10);
    // A flush due at 15 (items accessed up to 14 go).
    s.flush_all(14, 10);
    assert!(s.get(b"b", 13, |_| ()).is_some());
    assert!(s.get(b"b", 15, |_| ()).is_none());
    assert_eq!(s.stats().get_flushed, 1);
    s.store(SetMode::Set, b"c", 0, 0, b"1", 16);
    assert!(s.get(b"c", 17, |_| ()).is_some());
    // An immediate flush also takes what was stored in the same second.
    s.store(SetMode::Set, b"d", 0, 0, b"1", 20);
    s.flush_all(19, 20);
    s.store(SetMode::Set, b"e", 0, 0, b"1", 20);
    assert!(s.get(b"d", 20, |_| ()).is_none());
    assert!(s.get(b"e", 20, |_| ()).is_some());
}

#[test]
fn appends_keep_flags_and_expiry_and_check_cas() {
    let s = store(1 << 26);
    s.store(SetMode::Set, b"a", 7, 100, b"x", 1);
    assert!(matches!(
        s.store(SetMode::Append(0), b"a", 0, 0, b"yz", 1),
        StoreOutcome::Stored(_)
    ));
    let (v, f, e, cas) = s
        .get(b"a", 1, |i| (i.value.to_vec(), i.flags, i.exptime, i.cas))
        .unwrap();
    assert_eq!((v.as_slice(), f, e), (&b"xyz"[..], 7, 100));
    assert_eq!(
        s.store(SetMode::Prepend(cas + 1), b"a", 0, 0, b"w", 1),
        StoreOutcome::Exists
    );
    assert_eq!(
        s.store(SetMode::Append(0), b"none", 0, 0, b"w", 1),
        StoreOutcome::NotStored
    );
}
