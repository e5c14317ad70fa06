package procwatch

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
)

// maxHashSize bounds the executables hashed: a larger one is not hashed (its events
// list exe_sha256 as missing) so that one huge binary cannot stall the watcher.
const maxHashSize = 512 << 20

// maxHashCache bounds the hash cache; past it the cache starts afresh.
const maxHashCache = 8192

// fileKey identifies one version of a file's content: the same inode with the same
// size and times. ctime is included because, unlike mtime, no one can set it back.
type fileKey struct {
	dev, ino         uint64
	size             int64
	mtimeNs, ctimeNs int64
}

// hashCache remembers content hashes by fileKey. It is safe for concurrent use: the
// kernel reader looks keys up (to avoid holding a file for a known content) and Run's
// goroutine hashes and stores.
type hashCache struct {
	mu sync.Mutex
	m  map[fileKey]string
}

func newHashCache() *hashCache { return &hashCache{m: make(map[fileKey]string)} }

func (c *hashCache) get(k fileKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[k]
	return s, ok
}

func (c *hashCache) put(k fileKey, sum string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxHashCache {
		clear(c.m)
	}
	c.m[k] = sum
}

// hash returns the hex SHA-256 of the open file f, whose identity was k when it was
// opened, from the cache or by reading it from the start. A file that changed since
// (rewritten after its process exited) is not hashed: its content is no longer what
// ran.
func (c *hashCache) hash(f *os.File, k fileKey) (string, error) {
	if sum, ok := c.get(k); ok {
		return sum, nil
	}
	sum, err := hashFile(f, k.size)
	if err != nil {
		return "", err
	}
	if now, err := keyOfFile(f); err != nil || now != k {
		return "", fmt.Errorf("hashing %s: the file changed since it was executed", f.Name())
	}
	c.put(k, sum)
	return sum, nil
}

// hashPath hashes the file at path.
func hashPath(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	return hashFile(f, fi.Size())
}

func hashFile(f *os.File, size int64) (string, error) {
	if size > maxHashSize {
		return "", fmt.Errorf("hashing %s: %d bytes is over the %d-byte bound", f.Name(), size, maxHashSize)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, maxHashSize)); err != nil {
		return "", fmt.Errorf("hashing %s: %w", f.Name(), err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// enricher fills records from /proc. It is used by a mode's reader goroutine only,
// apart from hashes, which Run's goroutine shares.
type enricher struct {
	// hashing says every exec's executable must be hashed (a rule has MatchContent):
	// the reader then holds the executable open unless the cache knows its content.
	hashing bool
	hashes  *hashCache
}
