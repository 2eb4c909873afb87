package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

// PXEPort is the PXE boot server port (PXE 2.1): after a proxyDHCP offer,
// some firmware sends its boot-file REQUEST here, unicast, with ciaddr set.
const PXEPort = 4011

// PXEListener is a bound PXE boot-server socket; see ListenPXE.
type PXEListener struct {
	s    *Server
	conn *net.UDPConn
}

// ServePXE answers PXE boot-server REQUESTs on addr (":4011" when empty)
// until ctx ends: ListenPXE then Serve. Answers carry boot information only
// (never an address) and go back to the sender's address and port. It runs
// beside Run; cmd starts it in proxy mode.
func (s *Server) ServePXE(ctx context.Context, addr string) error {
	l, err := s.ListenPXE(addr)
	if err != nil {
		return err
	}
	return l.Serve(ctx)
}

// ListenPXE binds the PXE port on the server's interface. A caller that
// must bind inside a network namespace calls it there, then Serve anywhere.
func (s *Server) ListenPXE(addr string) (*PXEListener, error) {
	if addr == "" {
		addr = fmt.Sprintf(":%d", PXEPort)
	}
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), s.cfg.Interface) })
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("pxe boot server on %s (%s): %w", s.cfg.Interface, addr, err)
	}
	return &PXEListener{s: s, conn: pc.(*net.UDPConn)}, nil
}

// Serve answers until ctx ends, then closes the socket.
func (l *PXEListener) Serve(ctx context.Context) error {
	s, conn := l.s, l.conn
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("pxe boot server read: %w", err)
		}
		at := time.Now()
		reply := s.HandlePXE(buf[:n])
		if reply == nil {
			continue
		}
		if _, err := conn.WriteToUDP(reply.ToBytes(), peer); err != nil {
			s.log.Warn("pxe send failed", "to", peer, "error", err)
			s.m.dropped.WithLabelValues("send_error").Inc()
			continue
		}
		s.m.replies.WithLabelValues(reply.MessageType().String()).Inc()
		s.m.handle.Observe(time.Since(at).Seconds())
	}
}

// HandlePXE decides the answer to one packet received on the PXE port; nil
// means none. It never panics on input.
func (s *Server) HandlePXE(data []byte) *dhcpv4.DHCPv4 {
	if len(data) < 240 || len(data) > 1500 {
		s.m.dropped.WithLabelValues("malformed").Inc()
		return nil
	}
	req, err := dhcpv4.FromBytes(data)
	if err != nil || req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) != 6 {
		s.m.dropped.WithLabelValues("malformed").Inc()
		return nil
	}
	s.m.packets.WithLabelValues(req.MessageType().String()).Inc()
	if !s.limit.allow(req.ClientHWAddr.String(), s.opts.Now()) {
		s.m.dropped.WithLabelValues("rate_limited").Inc()
		return nil
	}
	if req.MessageType() != dhcpv4.MessageTypeRequest && req.MessageType() != dhcpv4.MessageTypeInform {
		return nil
	}
	return s.proxy(req, ClientOf(req))
}
