package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/internal/output"
	nodeimage "github.com/klab-dev/klab/provision/image"
)

// addImageBuild adds "build" to the "image" command group, making the group
// when no other file has.
func (a *app) addImageBuild(root *cobra.Command) {
	for _, c := range root.Commands() {
		if c.Name() == "image" {
			c.AddCommand(a.imageBuildCmd())
			return
		}
	}
	img := &cobra.Command{Use: "image", Short: "Build the VMs' node image", GroupID: "nodes"}
	img.AddCommand(a.imageBuildCmd())
	root.AddCommand(img)
}

func (a *app) imageBuildCmd() *cobra.Command {
	var o nodeimage.Options
	var format string
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build the node image that libvirt VMs boot",
		Long: `Build klab's node image for the libvirt provider: a kernel and an initramfs
holding busybox, OpenSSH's sshd with the libraries it needs, the kernel
modules the cluster needs (ipip, vxlan, bridge, veth, tun, nftables, virtio)
and an init that configures the VM from the kernel command line. The kernel
comes from --kernel-deb, --kernel-dir, the host's /boot and /lib/modules,
or the newest linux-image package in /var/cache/klab/kernels. Images are
cached by content hash: building an unchanged image again is instant.
"klab up --provider libvirt" builds it when needed.`,
		Example: `  apt-get download linux-image-6.1.0-28-cloud-amd64
  sudo klab image build --kernel-deb linux-image-6.1.0-28-cloud-amd64_*.deb
  sudo klab image build -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(format); err != nil {
				return err
			}
			if o.KernelDeb != "" && o.KernelDir != "" {
				return fmt.Errorf("give --kernel-deb or --kernel-dir, not both")
			}
			start := time.Now()
			img, err := nodeimage.Build(cmd.Context(), o)
			if err != nil {
				return err
			}
			took := time.Since(start)
			return output.Print(a.stdout, format, img, func(tw *tabwriter.Writer, wide bool) {
				state := "built"
				if img.Cached {
					state = "cached"
				}
				fmt.Fprintf(tw, "image\t%s (%s in %.1fs)\n", img.Hash, state, took.Seconds())
				fmt.Fprintf(tw, "kernel\t%s (from %s)\n", img.KernelVersion, img.KernelSource)
				fmt.Fprintf(tw, "initramfs\t%.1f MiB, %d modules\n", float64(img.InitrdBytes)/(1<<20), img.Modules)
				fmt.Fprintf(tw, "files\t%s\n", img.Dir)
			})
		},
	}
	cmd.Flags().StringVar(&o.KernelDeb, "kernel-deb", "", "a Debian linux-image package (.deb) to take the kernel and modules from")
	cmd.Flags().StringVar(&o.KernelDir, "kernel-dir", "", "a directory with boot/vmlinuz-VERSION and lib/modules/VERSION")
	cmd.Flags().StringVar(&o.Busybox, "busybox", "", "a static busybox (default: busybox on $PATH)")
	cmd.Flags().StringVar(&o.SSHD, "sshd", "", "OpenSSH's sshd (default: /usr/sbin/sshd)")
	cmd.Flags().StringVar(&o.CacheDir, "cache-dir", "", "where images are kept (default: $KLAB_CACHE_DIR or /var/cache/klab)")
	outputFlag(cmd, &format)
	return cmd
}
