package fleet

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exposes the containers of the nodes that heartbeat to this
// server, per node and unit, from their agents' last heartbeat (what
// cAdvisor would show): register it with the server's registry.
func (f *Fleet) Metrics() prometheus.Collector { return (*fleetCollector)(f) }

type fleetCollector Fleet

var (
	labels       = []string{"node", "unit", "replica"}
	descNodes    = prometheus.NewDesc("bootfleet_fleet_nodes_heartbeating", "Nodes whose agent heartbeats to this server.", nil, nil)
	descLeader   = prometheus.NewDesc("bootfleet_fleet_scheduler_leader", "1 when this server is the elected scheduler.", nil, nil)
	descRunning  = prometheus.NewDesc("bootfleet_unit_container_running", "1 when the unit container is running.", labels, nil)
	descCPU      = prometheus.NewDesc("bootfleet_unit_container_cpu_percent", "CPU use of the unit container, in percent of one core.", labels, nil)
	descMemory   = prometheus.NewDesc("bootfleet_unit_container_memory_bytes", "Memory use of the unit container.", labels, nil)
	descRx       = prometheus.NewDesc("bootfleet_unit_container_network_receive_bytes_total", "Bytes the unit container received.", labels, nil)
	descTx       = prometheus.NewDesc("bootfleet_unit_container_network_transmit_bytes_total", "Bytes the unit container sent.", labels, nil)
	descRestarts = prometheus.NewDesc("bootfleet_unit_container_restarts_total", "Restarts of the unit container.", labels, nil)
)

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodes, descLeader, descRunning, descCPU, descMemory, descRx, descTx, descRestarts} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	f := (*Fleet)(c)
	beats := f.LastHeartbeats()
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(len(beats)))
	leader := 0.0
	if f.IsLeader() {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, leader)
	for mac, cs := range beats {
		for _, s := range cs {
			lv := []string{mac, s.Unit, strconv.Itoa(s.Replica)}
			running := 0.0
			if s.State == "running" {
				running = 1
			}
			ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, running, lv...)
			ch <- prometheus.MustNewConstMetric(descCPU, prometheus.GaugeValue, s.CPUPercent, lv...)
			ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(s.MemoryBytes), lv...)
			ch <- prometheus.MustNewConstMetric(descRx, prometheus.CounterValue, float64(s.NetRxBytes), lv...)
			ch <- prometheus.MustNewConstMetric(descTx, prometheus.CounterValue, float64(s.NetTxBytes), lv...)
			ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(s.Restarts), lv...)
		}
	}
}
