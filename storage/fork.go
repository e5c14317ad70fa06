package storage

import (
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// forkNamespace scopes the ids of forks; changing it would change every fork's id.
var forkNamespace = uuid.MustParse("8585a52e-41a1-40cd-9873-94b87372ab1b")

// ForkID is the id of the chain that departs from the chain stored under parent (a host
// id, or a fork's id for a fork of a fork) at seq k, where the departing chain's entry k
// has hash hash: a UUIDv5 of "<parent>/<k>/<hash>". Every collector replica derives the
// same id for the same departure, whenever it sees it, and two chains departing from one
// parent (two clones of a host) differ at k or in their entry k, so get two ids. The
// fork's chain is stored under this id like a host's (docs/adr/0014).
func ForkID(parent string, k uint64, hash string) string {
	return uuid.NewSHA1(forkNamespace, []byte(parent+"/"+strconv.FormatUint(k, 10)+"/"+hash)).String()
}

// ForkEvent is the CRITICAL INTEGRITY event raised once per fork: an agent with the
// certificate of host hostID (named hostname) holds a chain that departs at seq k from
// the chain stored under parent, and its entries are kept under fork. The event's id is
// derived from the fork's, so that every replica and restart raises it once.
func ForkEvent(hostID, hostname, parent, fork string, k uint64, now time.Time) HostEvent {
	ev := NewHostEvent(hostID, hostname, HostIntegrity, now, now)
	ev.EventID = uuid.NewSHA1(hostEventNamespace, []byte(fork+"/fork")).String()
	what := fmt.Sprintf("at seq %d", k)
	if k == 1 {
		what = "at seq 1, a whole new chain: the mark of a wiped or reinstalled agent"
	}
	ev.Message = fmt.Sprintf("chain fork on host %s: an agent with this host's certificate holds an audit chain that departs from the chain stored as %s %s. "+
		"Its entries are kept, not refused, as fork %s (hosts and alerts show fork_of %s, fork_seq %d); the host's own chain is unchanged. "+
		"Likely causes: the agent's audit directory was wiped or the agent reinstalled, its audit log was rewritten, or two agents share one certificate (a cloned machine or a copied key). "+
		"Preserve the agent's audit directory as evidence. For a reinstalled host, issue a certificate with a new host id (tripwire-collector pki issue --new-host-id) and reload the agent; "+
		"if nobody reinstalled it, treat the certificate as stolen and revoke it (tripwire-collector pki revoke)",
		hostname, parent, what, fork, parent, k)
	return ev
}

// TruncationEvent is the CRITICAL INTEGRITY event raised when an agent's chain is a
// strict prefix of the chain stored under chainID: it ends at agentSeq (hash agentHash)
// where the store holds up to storedHead. Its id is derived from the chain and the
// agent's head, so that it is raised once per truncation. The agent's next entry starts
// a fork, which raises its own ForkEvent.
func TruncationEvent(hostID, hostname, chainID string, agentSeq uint64, agentHash string, storedHead uint64, now time.Time) HostEvent {
	ev := NewHostEvent(hostID, hostname, HostIntegrity, now, now)
	ev.EventID = uuid.NewSHA1(hostEventNamespace, []byte(chainID+"/truncated/"+strconv.FormatUint(agentSeq, 10)+"/"+agentHash)).String()
	holds := fmt.Sprintf("holds entries 1 to %d of", agentSeq)
	if agentSeq == 0 {
		holds = "holds no entry of"
	}
	ev.Message = fmt.Sprintf("truncated chain on host %s: an agent with this host's certificate %s the chain stored as %s, which goes on to seq %d: "+
		"its audit log was cut or restored from a backup. Nothing stored is lost. The agent's next entry will start a fork of the chain, raised as its own event. "+
		"Preserve the agent's audit directory as evidence",
		hostname, holds, chainID, storedHead)
	return ev
}
