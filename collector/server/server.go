// Package server composes the collector: the store named by the config (the embedded
// DuckDB file, or ClickHouse with PostgreSQL), the gRPC ingest service behind mutual TLS
// (which also renews agents' certificates), the enrolment service on its own listener
// when configured, the REST API and the live broker, run together under one context. The tripwire-collector binary and the end-to-end tests both start it here.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/tripwire-project/tripwire/collector/api"
	"github.com/tripwire-project/tripwire/collector/config"
	"github.com/tripwire-project/tripwire/collector/enroll"
	"github.com/tripwire-project/tripwire/collector/ingest"
	"github.com/tripwire-project/tripwire/collector/live"
	"github.com/tripwire-project/tripwire/collector/metrics"
	"github.com/tripwire-project/tripwire/collector/pki"
	"github.com/tripwire-project/tripwire/internal/version"
	tripwirev1 "github.com/tripwire-project/tripwire/proto/tripwire/v1"
	"github.com/tripwire-project/tripwire/storage"
	"github.com/tripwire-project/tripwire/storage/duckdb"
	"github.com/tripwire-project/tripwire/storage/fleet"
)

// Server is a running collector's parts.
type Server struct {
	cfg    *config.Config
	logger *slog.Logger
	store  storage.Store
	tls    *pki.ServerTLS
	// signer signs agents' certificates at enrolment and renewal. It is idle (not
	// Ready: renewals refused) while the PKI directory has no CA key; enrolment needs
	// the key at start.
	signer  *pki.Signer
	grpcL   net.Listener
	httpL   net.Listener
	enrollL net.Listener // nil: enrolment off
	// reg holds the collector's metrics, the store's among them.
	reg    *prometheus.Registry
	debugL net.Listener // nil unless listen.debug is set
}

// New opens the store, loads the TLS material and the CA that signs agents' certificates,
// and binds the listeners, so that a configuration or port problem is reported before
// Run.
func New(cfg *config.Config, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tlsSrc, err := pki.LoadServerTLS(cfg.PKI.Dir)
	if err != nil {
		return nil, fmt.Errorf("loading collector TLS from %s: %w", cfg.PKI.Dir, err)
	}
	signer, err := pki.NewSigner(cfg.PKI.Dir, cfg.PKI.AgentCertValidity)
	switch {
	case err != nil && cfg.Listen.Enroll != "":
		return nil, fmt.Errorf("enrolment (listen.enroll) needs the CA: %w", err)
	case err != nil:
		// A CA key kept offline is a legitimate choice: agents then keep their
		// certificates until an operator issues new ones.
		logger.Warn("agent certificates will not be renewed until the CA key is in place and the collector reloads (SIGHUP): the collector cannot sign", "err", err)
		signer = pki.NewIdleSigner(cfg.PKI.Dir, cfg.PKI.AgentCertValidity)
	}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	// The registry is made here so that the store can register its own metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store, err := OpenStore(ctx, cfg.Storage, logger, reg)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, logger: logger, store: store, tls: tlsSrc, signer: signer, reg: reg}
	if s.grpcL, err = net.Listen("tcp", cfg.Listen.GRPC); err != nil {
		store.Close()
		return nil, fmt.Errorf("listening for agents on %s: %w", cfg.Listen.GRPC, err)
	}
	if s.httpL, err = net.Listen("tcp", cfg.Listen.HTTP); err != nil {
		s.grpcL.Close()
		store.Close()
		return nil, fmt.Errorf("listening for the API on %s: %w", cfg.Listen.HTTP, err)
	}
	if cfg.Listen.Enroll != "" {
		if s.enrollL, err = net.Listen("tcp", cfg.Listen.Enroll); err != nil {
			s.grpcL.Close()
			s.httpL.Close()
			store.Close()
			return nil, fmt.Errorf("listening for enrolment on %s: %w", cfg.Listen.Enroll, err)
		}
	}
	if cfg.Listen.Debug != "" {
		if s.debugL, err = net.Listen("tcp", cfg.Listen.Debug); err != nil {
			s.httpL.Close()
			s.grpcL.Close()
			if s.enrollL != nil {
				s.enrollL.Close()
			}
			store.Close()
			return nil, fmt.Errorf("listening for profiles on %s: %w", cfg.Listen.Debug, err)
		}
	}
	return s, nil
}

// openTimeout bounds connecting to the store's servers and migrating their schemas at
// start.
const openTimeout = 2 * time.Minute

// OpenStore opens the store cfg names, bringing its schema up to date: the embedded
// DuckDB file, or ClickHouse with PostgreSQL (storage/fleet) when both are configured.
// reg, if not nil, receives the store's own metrics.
func OpenStore(ctx context.Context, cfg config.Storage, logger *slog.Logger, reg prometheus.Registerer) (storage.Store, error) {
	if cfg.Fleet() {
		store, err := fleet.Open(ctx, fleet.Options{
			ClickHouseAddr: cfg.ClickHouse.Addr, ClickHouseDatabase: cfg.ClickHouse.Database,
			PostgresDSN: cfg.Postgres.DSN, Logger: logger, Registerer: reg,
		})
		if err != nil {
			return nil, fmt.Errorf("opening the ClickHouse (%s/%s) and PostgreSQL store: %w", cfg.ClickHouse.Addr, cfg.ClickHouse.Database, err)
		}
		return store, nil
	}
	store, err := duckdb.Open(cfg.DuckDB, logger)
	if err != nil {
		return nil, fmt.Errorf("opening embedded store %s: %w", cfg.DuckDB, err)
	}
	return store, nil
}

// storeName says which store a config names, for logs; it leaves out the PostgreSQL
// DSN, which may hold a password.
func storeName(cfg config.Storage) string {
	if cfg.Fleet() {
		return "clickhouse:" + cfg.ClickHouse.Addr + "/" + cfg.ClickHouse.Database + "+postgresql"
	}
	return "duckdb:" + cfg.DuckDB
}

// GRPCAddr is the address agents connect to.
func (s *Server) GRPCAddr() string { return s.grpcL.Addr().String() }

// HTTPAddr is the API's address.
func (s *Server) HTTPAddr() string { return s.httpL.Addr().String() }

// EnrollAddr is the enrolment listener's address, "" when enrolment is off.
func (s *Server) EnrollAddr() string {
	if s.enrollL == nil {
		return ""
	}
	return s.enrollL.Addr().String()
}

// ReloadTLS re-reads the server certificate and CA, and the CA that signs agents'
// certificates (SIGHUP). A collector started without the CA key starts renewing once
// the key is in place; while it is still missing, that is logged, not an error.
func (s *Server) ReloadTLS() error {
	err := s.tls.Reload()
	wasReady := s.signer.Ready()
	serr := s.signer.Reload()
	switch {
	case serr == nil && !wasReady:
		s.logger.Info("agent certificates are renewed from now on: the CA key is in place", "dir", s.cfg.PKI.Dir)
	case serr != nil && !wasReady:
		s.logger.Warn("agent certificates are still not renewed: the collector cannot sign", "err", serr)
	case serr != nil:
		err = errors.Join(err, serr)
	}
	return err
}

// Run serves until ctx ends, then stops both servers gracefully and closes the store.
func (s *Server) Run(ctx context.Context) error {
	defer s.store.Close()
	broker := live.NewBroker(0)
	reg := s.reg
	m := metrics.New(reg)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tripwire_collector_live_subscribers",
		Help: "Live alert subscribers (API followers) of this collector.",
	}, func() float64 { return float64(broker.Subscribers()) }))
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(s.tls.Config())),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(64<<20),
		// Stop waits for handlers, so the store is not closed under a running one.
		grpc.WaitForHandlers(true),
	)
	// With the fleet store, alerts reach every collector replica's live subscribers
	// through PostgreSQL; with the embedded store, this process's.
	var publisher live.Publisher = broker
	var fanout *live.PGFanout
	if s.cfg.Storage.Fleet() {
		fanout = live.NewPGFanout(s.cfg.Storage.Postgres.DSN, broker, s.store, s.logger.With("component", "live"))
		publisher = fanout
	}
	ingestServer := ingest.New(s.store, publisher, pki.IdentityFromContext, version.Version, s.logger.With("component", "ingest"), m)
	revoked := &pki.Revocations{}
	if err := s.loadRevocations(ctx, revoked); err != nil {
		return err
	}
	revokedUse := newRevokedUse(s.store, publisher, s.logger.With("component", "pki"), m)
	s.tls.UseRevocations(revoked, revokedUse.refused)
	ingestServer.CheckCertificates(pki.PeerCertificate, revoked)
	em := metrics.NewEnrolment(reg)
	ingestServer.RenewWith(s.signer, em)
	tripwirev1.RegisterIngestServiceServer(gs, ingestServer)
	var jwtOpts *api.JWTOptions
	if j := s.cfg.API.JWT; j != nil {
		jwtOpts = &api.JWTOptions{JWT: *j}
	}
	var enrolOpts *api.EnrolOptions
	if s.enrollL != nil {
		enrolOpts = &api.EnrolOptions{CACertificate: s.signer.CACertificate, Address: s.EnrollAddr()}
	}
	hs := &http.Server{
		Handler: api.New(api.Options{
			Store: s.store, Broker: broker, Tokens: s.cfg.API.Tokens, JWT: jwtOpts, Version: version.Version,
			Logger:  s.logger.With("component", "api"),
			Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
			Enrol:   enrolOpts,
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	g, gctx := errgroup.WithContext(ctx)
	hs.BaseContext = func(net.Listener) context.Context { return gctx }
	s.logger.Info("collector serving", "grpc", s.GRPCAddr(), "http", s.HTTPAddr(), "enroll", s.EnrollAddr(),
		"agent_cert_validity", s.cfg.PKI.AgentCertValidity, "store", storeName(s.cfg.Storage), "version", version.Version)
	if s.enrollL != nil {
		es := s.enrollServer(em)
		g.Go(func() error {
			if err := es.Serve(s.enrollL); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("serving enrolment: %w", err)
			}
			return nil
		})
		g.Go(func() error { <-gctx.Done(); es.Stop(); return nil })
	}

	if fanout != nil {
		g.Go(func() error { return fanout.Run(gctx) })
	}
	g.Go(func() error { ingestServer.RunRules(gctx, ingest.RulesPollInterval); return nil })
	g.Go(func() error { s.refreshRevocations(gctx, revoked); return nil })
	g.Go(func() error { revokedUse.run(gctx); return nil })
	g.Go(func() error { s.deadMan(gctx, time.Duration(s.cfg.DeadManSeconds)*time.Second, publisher); return nil })
	if days := s.cfg.Storage.RetentionDays; days > 0 {
		if f, ok := s.store.(*fleet.Store); ok {
			g.Go(func() error { s.enforceRetention(gctx, f, days); return nil })
		}
	}
	g.Go(func() error {
		if err := gs.Serve(s.grpcL); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serving gRPC: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := hs.Serve(s.httpL); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving HTTP: %w", err)
		}
		return nil
	})
	if s.debugL != nil {
		ds := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 10 * time.Second}
		s.logger.Info("serving profiles", "debug", s.debugL.Addr().String())
		g.Go(func() error {
			if err := ds.Serve(s.debugL); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serving profiles: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			// A CPU profile being taken is cut: it is a diagnosis, not a service.
			return ds.Close()
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		// Agent streams never end by themselves, so there is nothing to drain: an entry
		// being stored when the stream is cut was not acked and will be resent.
		gs.Stop()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Live followers end with gctx (BaseContext); one stuck writing to a stalled
		// client is cut at the deadline, which is not a failure of the collector.
		if err := hs.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	})
	err := g.Wait()
	s.logger.Info("collector stopped")
	return err
}

// enrollServer is the gRPC server of the enrolment listener: EnrollService only, TLS
// without client certificates, small messages, and short calls (an enrolment is one
// request and one answer).
func (s *Server) enrollServer(m *metrics.Enrolment) *grpc.Server {
	es := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(s.tls.EnrollConfig())),
		grpc.MaxRecvMsgSize(64<<10),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: time.Minute, MaxConnectionAge: 5 * time.Minute}),
		grpc.WaitForHandlers(true),
	)
	tripwirev1.RegisterEnrollServiceServer(es, enroll.New(enroll.Options{
		Store: s.store, Signer: s.signer, Logger: s.logger.With("component", "enroll"), Metrics: m,
	}))
	return es
}

// revocationPoll is how often the revoked certificates are read from the store, where
// any replica's `pki revoke` records them.
const revocationPoll = time.Second

func (s *Server) loadRevocations(ctx context.Context, into *pki.Revocations) error {
	list, err := s.store.Revoked(ctx)
	if err != nil {
		return fmt.Errorf("reading revoked certificates: %w", err)
	}
	bySerial, byKey := make(map[string]string, len(list)), make(map[string]string, len(list))
	for _, c := range list {
		reason := fmt.Sprintf("revoked at %s: %s", c.RevokedAt.Format(time.RFC3339), c.Reason)
		bySerial[c.Serial] = reason
		if c.KeySHA256 != "" {
			byKey[c.KeySHA256] = fmt.Sprintf("with certificate %s, %s", c.Serial, reason)
		}
	}
	into.Replace(bySerial, byKey)
	return nil
}

// refreshRevocations keeps into current until ctx ends; while the store cannot be
// read, the last set read stays in force.
func (s *Server) refreshRevocations(ctx context.Context, into *pki.Revocations) {
	t := time.NewTicker(revocationPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.loadRevocations(ctx, into); err != nil && ctx.Err() == nil {
				s.logger.Warn("refreshing revoked certificates", "err", err)
			}
		}
	}
}

// retentionEvery is how often retention is enforced.
const retentionEvery = time.Hour

// enforceRetention drops the months that ended more than days ago, at start and then
// every retentionEvery, until ctx ends.
func (s *Server) enforceRetention(ctx context.Context, f *fleet.Store, days int) {
	for {
		cutoff := time.Now().UTC().AddDate(0, 0, -days)
		months, err := f.DropMonthsBefore(ctx, cutoff)
		switch {
		case err != nil && ctx.Err() == nil:
			s.logger.Error("enforcing retention", "days", days, "err", err)
		case len(months) > 0:
			s.logger.Info("retention: dropped history", "days", days, "months", months)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retentionEvery):
		}
	}
}

// deadMan marks the hosts silent for longer than after OFFLINE, every second until ctx
// ends, publishing each OFFLINE event to live subscribers; and every 10 s (first at
// start) it raises a WARN for each host certificate whose renewal is overdue
// (storage.CertExpiryEvent). Every replica runs it; the store raises each event once (a conditional
// update, a derived event id).
func (s *Server) deadMan(ctx context.Context, after time.Duration, pub live.Publisher) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for tick := 0; ; tick++ {
		if tick%10 == 0 {
			s.warnCertExpiry(ctx, pub)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now().UTC()
		events, err := s.store.MarkOffline(ctx, now.Add(-after), now)
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("dead-man switch: reading silent hosts", "err", err)
			}
			continue
		}
		for _, ev := range events {
			s.logger.Warn("host went silent: marked OFFLINE", "host", ev.Hostname, "host_id", ev.HostID, "event_id", ev.EventID)
			pub.Publish(ev.Alert())
		}
	}
}

// warnCertExpiry raises a WARN host event, once, for each certificate close to expiry
// whose renewal is overdue.
func (s *Server) warnCertExpiry(ctx context.Context, pub live.Publisher) {
	hosts, err := s.store.Hosts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("checking certificate expiry", "err", err)
		}
		return
	}
	now := time.Now().UTC()
	for _, h := range hosts {
		ev, due := storage.CertExpiryEvent(h, now)
		if !due {
			continue
		}
		added, err := s.store.AddHostEvent(ctx, ev)
		if err != nil {
			s.logger.Warn("recording a certificate expiry warning", "host", h.Hostname, "err", err)
			continue
		}
		if added {
			s.logger.Warn("host certificate renewal overdue", "host", h.Hostname, "serial", h.CertSerial, "not_after", h.CertNotAfter)
			pub.Publish(ev.Alert())
		}
	}
}
