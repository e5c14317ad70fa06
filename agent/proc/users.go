package proc

import (
	"os/user"
	"strconv"
	"sync"
	"time"
)

// DefaultUserTTL is how long Users remembers a name (or the absence of one).
const DefaultUserTTL = 5 * time.Minute

// maxUsers bounds the cache; past it the cache starts afresh.
const maxUsers = 4096

// Users resolves user ids to names with os/user, remembering each answer for a while.
// With CGO disabled os/user parses /etc/passwd on every miss, so Name may open that
// file: never call it from a goroutine that answers fanotify permission events, since
// /etc/passwd is commonly watched and the open would wait on that very goroutine.
//
// A Users is safe for concurrent use. The zero value is not usable; call NewUsers.
type Users struct {
	ttl    time.Duration
	now    func() time.Time
	lookup func(uid string) (string, error)

	mu sync.Mutex
	m  map[int64]userEntry
}

type userEntry struct {
	name    string
	expires time.Time
}

// NewUsers returns a resolver that caches answers for ttl (DefaultUserTTL if ttl <= 0).
func NewUsers(ttl time.Duration) *Users {
	if ttl <= 0 {
		ttl = DefaultUserTTL
	}
	return &Users{
		ttl: ttl,
		now: time.Now,
		lookup: func(uid string) (string, error) {
			u, err := user.LookupId(uid)
			if err != nil {
				return "", err
			}
			return u.Username, nil
		},
		m: make(map[int64]userEntry),
	}
}

// Name returns the user name of uid, or "" if the user database has no such user or
// cannot be read (the failure is remembered for the cache's TTL as well).
func (u *Users) Name(uid int64) string {
	if uid < 0 {
		return ""
	}
	now := u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if e, ok := u.m[uid]; ok && now.Before(e.expires) {
		return e.name
	}
	name, err := u.lookup(strconv.FormatInt(uid, 10))
	if err != nil {
		name = ""
	}
	if len(u.m) >= maxUsers {
		clear(u.m)
	}
	u.m[uid] = userEntry{name: name, expires: now.Add(u.ttl)}
	return name
}
