package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Snapshot errors. Restore returns one of them (wrapped) for every snapshot
// it does not load; the caller logs it and starts empty.
var (
	ErrSnapshotMissing = errors.New("session: snapshot missing")
	ErrSnapshotStale   = errors.New("session: snapshot stale")
	// ErrSnapshotCorrupt covers truncated, tampered, foreign-key and
	// unparsable snapshots: after authentication fails nothing is parsed.
	ErrSnapshotCorrupt = errors.New("session: snapshot corrupt, tampered or written with another key")
)

// Snapshot file layout:
//
//	magic "EASNAP" | version 1 | reserved 0 | salt [32] | nonce [12] | AES-256-GCM ciphertext
//
// The AES key is HKDF-SHA256(session key, salt, snapshotInfo), a fresh salt
// per file, so the cookie-signing key is never used directly for
// encryption. The header up to the nonce is additional data: a flipped
// version or salt fails authentication too. The plaintext is
//
//	created unix nanoseconds [8, big endian]
//	uvarint revocations, each: str issuer, str subject, varint unix nanoseconds
//	uvarint sessions, each: uvarint length, MarshalBinary record
const (
	snapshotMagic   = "EASNAP\x01\x00"
	snapshotInfo    = "edgeauth-session-snapshot-v1"
	snapshotSaltLen = 32
	snapshotHdrLen  = len(snapshotMagic) + snapshotSaltLen + 12
)

// maxSnapshotSize bounds what Restore reads: the records fit the budget, the
// revocations their own bound.
func (m *MemoryStore) maxSnapshotSize() int64 {
	return 2*m.budget + maxRevocations*2*MaxFieldSize/64 + 1<<20
}

// Snapshot writes every live session and the subject revocations to path,
// encrypted and authenticated under a key derived from key (use the first
// session key). The file is written to a temporary file in the same
// directory, fsynced and renamed over path (mode 0600), so a crash leaves
// either the old or the new snapshot, never half of one.
func (m *MemoryStore) Snapshot(path string, key []byte) error {
	if len(key) < MinKeySize {
		return fmt.Errorf("session: snapshot: key shorter than %d bytes", MinKeySize)
	}
	now := m.now()
	var sessions []*Session
	m.mu.Lock()
	for _, ids := range m.bySub {
		for _, e := range ids {
			if s := e.sess.Load(); !e.dead.Load() && now.Before(m.deadline(s)) {
				sessions = append(sessions, s)
			}
		}
	}
	type rev struct {
		k  subjectKey
		at time.Time
	}
	revs := make([]rev, 0, len(m.revoked))
	for k, at := range m.revoked {
		revs = append(revs, rev{k, at})
	}
	m.mu.Unlock()

	plain := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	plain = binary.AppendUvarint(plain, uint64(len(revs)))
	for _, r := range revs {
		plain = appendStr(plain, r.k.iss)
		plain = appendStr(plain, r.k.sub)
		plain = binary.AppendVarint(plain, r.at.UnixNano())
	}
	plain = binary.AppendUvarint(plain, uint64(len(sessions)))
	for _, s := range sessions {
		rec, err := s.MarshalBinary()
		if err != nil {
			return fmt.Errorf("session: snapshot: %w", err)
		}
		plain = binary.AppendUvarint(plain, uint64(len(rec)))
		plain = append(plain, rec...)
	}

	out := make([]byte, snapshotHdrLen, snapshotHdrLen+len(plain)+16)
	copy(out, snapshotMagic)
	salt := out[len(snapshotMagic) : len(snapshotMagic)+snapshotSaltLen]
	nonce := out[len(snapshotMagic)+snapshotSaltLen : snapshotHdrLen]
	_, _ = rand.Read(salt)
	_, _ = rand.Read(nonce)
	aead, err := snapshotAEAD(key, salt)
	if err != nil {
		return fmt.Errorf("session: snapshot: %w", err)
	}
	out = aead.Seal(out, nonce, plain, out[:len(snapshotMagic)+snapshotSaltLen])
	if err := writeFileAtomic(path, out); err != nil {
		return fmt.Errorf("session: snapshot: %w", err)
	}
	m.log.Info("session: snapshot written", "sessions", len(sessions), "bytes", len(out))
	return nil
}

func snapshotAEAD(key, salt []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, key, salt, snapshotInfo, 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	// Persist the rename itself.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Restore loads a snapshot written by Snapshot with one of keys (all
// session keys: the snapshot may predate a rotation). It returns how many
// sessions it restored. A missing, stale (older than the lifetime),
// truncated, tampered or foreign snapshot loads nothing and returns an error
// wrapping ErrSnapshotMissing, ErrSnapshotStale or ErrSnapshotCorrupt.
// Restored sessions keep their expiry, idle and revocation rules: expired
// ones are dropped. Call it before serving.
func (m *MemoryStore) Restore(path string, keys [][]byte) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %w", ErrSnapshotMissing, err)
	}
	if err != nil {
		return 0, fmt.Errorf("session: restore: %w", err)
	}
	defer f.Close()
	limit := m.maxSnapshotSize()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return 0, fmt.Errorf("session: restore: %w", err)
	}
	if int64(len(data)) > limit {
		return 0, fmt.Errorf("%w: larger than %d bytes", ErrSnapshotCorrupt, limit)
	}
	snap, err := decodeSnapshot(data, keys)
	if err != nil {
		return 0, err
	}
	now := m.now()
	if age := now.Sub(snap.created); age > m.lifetime {
		return 0, fmt.Errorf("%w: written %v ago, lifetime %v", ErrSnapshotStale, age.Round(time.Second), m.lifetime)
	}
	m.mu.Lock()
	for _, r := range snap.revocations {
		if cur, ok := m.revoked[r.k]; (!ok || r.at.After(cur)) && now.Sub(r.at) < m.lifetime {
			m.recordRevocation(r.k, r.at)
		}
	}
	m.mu.Unlock()
	queued := make([]*entry, 0, len(snap.sessions))
	for _, s := range snap.sessions {
		if e, err := m.put(s, false); err == nil && e != nil {
			queued = append(queued, e)
		}
	}
	m.cache.Wait()
	n := 0
	for _, e := range queued {
		if got, ok := m.cache.Get(e.sess.Load().ID); ok && got == e {
			n++
		} else if !e.dead.Load() {
			m.mu.Lock()
			m.kill(e)
			m.mu.Unlock()
		}
	}
	m.log.Info("session: snapshot restored", "sessions", n, "in_file", len(snap.sessions))
	return n, nil
}

type snapshot struct {
	created     time.Time
	revocations []struct {
		k  subjectKey
		at time.Time
	}
	sessions []*Session
}

// decodeSnapshot authenticates data under each key in turn and parses it.
// Nothing is parsed before authentication succeeds.
func decodeSnapshot(data []byte, keys [][]byte) (*snapshot, error) {
	if len(data) < snapshotHdrLen+16 {
		return nil, fmt.Errorf("%w: truncated header", ErrSnapshotCorrupt)
	}
	if string(data[:len(snapshotMagic)]) != snapshotMagic {
		return nil, fmt.Errorf("%w: bad magic or version", ErrSnapshotCorrupt)
	}
	salt := data[len(snapshotMagic) : len(snapshotMagic)+snapshotSaltLen]
	nonce := data[len(snapshotMagic)+snapshotSaltLen : snapshotHdrLen]
	ad := data[:len(snapshotMagic)+snapshotSaltLen]
	for _, k := range keys {
		if len(k) < MinKeySize {
			continue
		}
		aead, err := snapshotAEAD(k, salt)
		if err != nil {
			return nil, fmt.Errorf("session: restore: %w", err)
		}
		plain, err := aead.Open(nil, nonce, data[snapshotHdrLen:], ad)
		if err != nil {
			continue
		}
		return parseSnapshotPayload(plain)
	}
	return nil, fmt.Errorf("%w: authentication failed", ErrSnapshotCorrupt)
}

// parseSnapshotPayload parses an authenticated plaintext. It is still
// defensive: a bug in an older writer must not crash the start-up.
func parseSnapshotPayload(p []byte) (*snapshot, error) {
	if len(p) < 8 {
		return nil, fmt.Errorf("%w: truncated payload", ErrSnapshotCorrupt)
	}
	snap := &snapshot{created: time.Unix(0, int64(binary.BigEndian.Uint64(p)))}
	r := recordReader{src: string(p[8:])}
	nrev := r.length(maxRevocations, 3)
	for range nrev {
		iss, sub := r.str(), r.str()
		at := r.varint()
		if r.err != nil {
			break
		}
		snap.revocations = append(snap.revocations, struct {
			k  subjectKey
			at time.Time
		}{subjectKey{iss, sub}, time.Unix(0, at)})
	}
	nsess := r.length(len(r.src), 2)
	if r.err == nil {
		snap.sessions = make([]*Session, 0, nsess)
	}
	for range nsess {
		n := r.length(MaxRecordSize, 1)
		if r.err != nil {
			break
		}
		s := new(Session)
		if err := s.UnmarshalBinary([]byte(r.src[r.off : r.off+n])); err != nil {
			return nil, fmt.Errorf("%w: session %d: %w", ErrSnapshotCorrupt, len(snap.sessions), err)
		}
		r.off += n
		snap.sessions = append(snap.sessions, s)
	}
	if r.err == nil && r.off != len(r.src) {
		r.err = fmt.Errorf("%d trailing bytes", len(r.src)-r.off)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshotCorrupt, r.err)
	}
	return snap, nil
}
