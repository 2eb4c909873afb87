package agent

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"
)

// restartBackoff is the least time between two restarts of one container
// by the agent (the Engine's own restart policy acts in between).
const restartBackoff = 5 * time.Second

// reconcile makes the node's unit containers what the assignments say:
// creates what is missing, recreates what changed, starts what failed,
// and removes unit containers of this node that are no longer assigned.
// It touches only containers labelled with this node's MAC.
func (a *Agent) reconcile(ctx context.Context, assignments []Assignment) {
	if assignments == nil {
		return // no orders yet: leave everything as it is
	}
	d := a.cfg.Docker
	existing, err := d.Containers(ctx, LabelNode+"="+a.cfg.Node)
	if err != nil {
		a.log.Error("listing containers failed", "error", err)
		return
	}
	byName := map[string]Container{}
	for _, c := range existing {
		byName[c.Name()] = c
	}
	wanted := map[string]bool{}
	for _, as := range assignments {
		name := containerName(as.Unit, as.Replica)
		wanted[name] = true
		st := ContainerStatus{Unit: as.Unit, Replica: as.Replica, Name: name, Image: as.Image, Hash: as.Hash}
		c, ok := byName[name]
		if ok && c.Labels[LabelHash] != as.Hash {
			a.log.Info("unit changed; replacing its container", "container", name)
			if err := d.RemoveContainer(ctx, c.ID, a.cfg.StopGrace); err != nil {
				a.setStatus(name, withError(st, "failed", err))
				continue
			}
			ok = false
		}
		if !ok {
			id, err := a.create(ctx, as, name)
			if err != nil {
				a.log.Error("starting unit container failed", "container", name, "error", err)
				a.setStatus(name, withError(st, "failed", err))
				continue
			}
			a.log.Info("started unit container", "container", name, "image", as.Image)
			st.ID, st.State = id, "running"
			a.setStatus(name, st)
			continue
		}
		st.ID, st.State = c.ID, c.State
		if c.State != "running" {
			st = a.restart(ctx, c, st)
		}
		a.setStatus(name, st)
	}
	// A removal waits for the container's grace period: it goes on in the
	// background, so new assignments are not held up behind it.
	a.mu.Lock()
	for name, c := range byName {
		if wanted[name] || a.removing[c.ID] {
			continue
		}
		a.removing[c.ID] = true
		go func() {
			a.log.Info("removing container no longer assigned", "container", name)
			if err := d.RemoveContainer(ctx, c.ID, a.cfg.StopGrace); err != nil {
				a.log.Error("removing container failed", "container", name, "error", err)
			}
			a.mu.Lock()
			delete(a.removing, c.ID)
			a.mu.Unlock()
		}()
	}
	for name := range a.status {
		if !wanted[name] {
			delete(a.status, name)
		}
	}
	a.mu.Unlock()
}

func withError(st ContainerStatus, state string, err error) ContainerStatus {
	st.State, st.Error = state, err.Error()
	return st
}

func (a *Agent) setStatus(name string, st ContainerStatus) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.status[name]; ok && prev.ID == st.ID {
		st.Restarts = max(st.Restarts, prev.Restarts)
	}
	a.status[name] = st
}

// restart starts a stopped container again, at most once per
// restartBackoff, counting the restarts.
func (a *Agent) restart(ctx context.Context, c Container, st ContainerStatus) ContainerStatus {
	a.mu.Lock()
	last := a.restarts[c.ID]
	prev := a.status[st.Name]
	a.mu.Unlock()
	st.Restarts = prev.Restarts
	if time.Since(last) < restartBackoff {
		return st
	}
	if in, err := a.cfg.Docker.InspectContainer(ctx, c.ID); err == nil {
		st.Restarts = max(st.Restarts, in.RestartCount)
		if in.State.Status == "running" {
			st.State = "running"
			return st
		}
	}
	a.log.Info("restarting unit container", "container", st.Name, "state", c.State)
	if err := a.cfg.Docker.StartContainer(ctx, c.ID); err != nil {
		return withError(st, c.State, err)
	}
	a.mu.Lock()
	a.restarts[c.ID] = time.Now()
	a.mu.Unlock()
	st.Restarts++
	st.State = "running"
	return st
}

// create makes sure the image is there, then creates and starts the
// container of one assignment.
func (a *Agent) create(ctx context.Context, as Assignment, name string) (string, error) {
	d := a.cfg.Docker
	if err := a.ensureImage(ctx, as.Image); err != nil {
		return "", err
	}
	env := make([]string, 0, len(as.Env)+3)
	for _, k := range slices.Sorted(maps.Keys(as.Env)) {
		env = append(env, k+"="+as.Env[k])
	}
	env = append(env, "BOOTFLEET_NODE="+a.cfg.Node, "BOOTFLEET_UNIT="+as.Unit, "BOOTFLEET_REPLICA="+strconv.Itoa(as.Replica))
	id, err := d.CreateContainer(ctx, ContainerSpec{
		Name:  name,
		Image: as.Image,
		Cmd:   as.Command,
		Env:   env,
		Labels: map[string]string{
			LabelNode: a.cfg.Node, LabelUnit: as.Unit, LabelReplica: strconv.Itoa(as.Replica), LabelHash: as.Hash,
		},
		MemoryBytes: as.MemoryBytes,
		CPUs:        as.CPUs,
	})
	if err != nil {
		return "", err
	}
	if err := d.StartContainer(ctx, id); err != nil {
		return id, err
	}
	return id, nil
}

// ensureImage makes the image available: present already, or loaded from
// an archive the bootfleet server holds (air-gapped labs), or pulled from
// its registry.
func (a *Agent) ensureImage(ctx context.Context, ref string) error {
	d := a.cfg.Docker
	if ok, err := d.ImageExists(ctx, ref); err != nil || ok {
		return err
	}
	// Any server of the cluster may hold the archive: the current one
	// first.
	a.mu.Lock()
	servers := append(slices.Clone(a.cfg.Servers[a.server:]), a.cfg.Servers[:a.server]...)
	a.mu.Unlock()
	for _, base := range servers {
		loaded, err := a.loadArchive(ctx, base, ref)
		if err != nil {
			return err
		}
		if loaded {
			return nil
		}
	}
	a.log.Info("pulling image", "image", ref)
	if err := d.PullImage(ctx, ref); err != nil {
		return fmt.Errorf("image %s: not on this node, not among bootfleet's image archives, and the pull failed: %w", ref, err)
	}
	return nil
}

// loadArchive loads the image from one server's archives; loaded is false
// when that server has none for it (or cannot be reached).
func (a *Agent) loadArchive(ctx context.Context, base, ref string) (loaded bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/agent/"+url.PathEscape(a.cfg.Node)+"/image?ref="+url.QueryEscape(ref), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(req)
	if err != nil {
		return false, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, nil
	}
	a.log.Info("loading image archive from bootfleet", "image", ref, "server", base)
	if err := a.cfg.Docker.LoadImage(ctx, resp.Body); err != nil {
		return false, fmt.Errorf("image %s from %s: %w", ref, base, err)
	}
	return true, nil
}

// sample returns the containers' states with a fresh resource sample each.
func (a *Agent) sample(ctx context.Context) []ContainerStatus {
	a.mu.Lock()
	list := make([]ContainerStatus, 0, len(a.status))
	for _, st := range a.status {
		list = append(list, st)
	}
	a.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range list {
		if list[i].ID == "" || list[i].State != "running" {
			continue
		}
		wg.Add(1)
		go func(st *ContainerStatus) {
			defer wg.Done()
			s, err := a.cfg.Docker.Stats(ctx, st.ID)
			if err != nil {
				return
			}
			a.mu.Lock()
			prev, had := a.prevStats[st.ID]
			a.prevStats[st.ID] = s
			a.mu.Unlock()
			if had && s.SystemTotal > prev.SystemTotal && s.CPUTotal >= prev.CPUTotal {
				cpus := float64(max(s.OnlineCPUs, 1))
				st.CPUPercent = float64(s.CPUTotal-prev.CPUTotal) / float64(s.SystemTotal-prev.SystemTotal) * cpus * 100
			}
			st.MemoryBytes, st.NetRxBytes, st.NetTxBytes = s.MemoryBytes, s.NetRxBytes, s.NetTxBytes
		}(&list[i])
	}
	wg.Wait()
	// Forget samples of containers that are gone.
	a.mu.Lock()
	live := map[string]bool{}
	for _, st := range list {
		live[st.ID] = true
	}
	for id := range a.prevStats {
		if !live[id] {
			delete(a.prevStats, id)
		}
	}
	a.mu.Unlock()
	return list
}
