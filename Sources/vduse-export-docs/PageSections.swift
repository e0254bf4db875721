import Kernel
import Provisioning

/// What the manual says beyond the parser's definitions.
enum PageSections {
    /// Every status the tool exits with; the switch is exhaustive, so a new ExitStatus case does
    /// not compile until it is documented here.
    static func meaning(_ status: ExitStatus) -> String {
        switch status {
        case .success: "Success."
        case .invalidOptions: "Invalid options: QEMU's message on stderr, as \\fBvduse\\-export: MESSAGE\\fR. Nothing was created."
        case .conflict: "The name is exported already with another image, or its export is stale (\\fBdel\\fR it)."
        case .kernel: "The kernel side failed: no VDUSE, device creation or resize refused, no disk appeared, or the server's QMP socket failed. Nothing is left behind by \\fBadd\\fR."
        case .inUse: "\\fBdel\\fR or a shrinking \\fBresize\\fR refused: the disk is mounted, held or open (the message says by what)."
        case .notFound: "No export of that name."
        case .cancelled: "\\fBcommit\\fR or \\fBmirror\\fR interrupted by SIGINT or SIGTERM: the job was cancelled, the disk stays on its image, a target the command created is removed."
        }
    }

    static let statuses = ExitStatus.allCases

    static var exitStatus: String {
        statuses.map { ".TP\n.B \($0.rawValue)\n\(meaning($0))" }.joined(separator: "\n")
            + "\n.TP\n.B 64\nCommand-line usage error (unknown option, missing argument)."
    }

    static let environment = """
        .TP
        .B VDUSE_EXPORT_STATE_DIR
        The state directory instead of \\fI/run/vduse\\-export\\fR.
        .TP
        .B VDUSE_EXPORT_CONFIG_DIR
        Where \\fBadd \\-\\-persist\\fR writes configurations instead of \\fI/etc/vduse\\-export\\fR.
        .TP
        .B VDUSE_EXPORT_TUNING
        Experimental data\\-path settings read by the server, \\fIkey\\fR=\\fIvalue\\fR[,...]: \\fBpoll\\-us\\fR (spin before sleeping), \\fBbounce\\-mb\\fR (bounce buffer size), \\fBirq\\-mask\\fR (hex CPU mask or \\fBdriver\\fR), \\fBinline\\-read\\-kb\\fR, \\fBvectored\\fR. For measuring levers against the defaults (docs/performance.md); unknown keys are ignored; not a stable interface.
        .TP
        .B VDUSE_EXPORT_TEST_CRASH
        Test only (the test bed's \\fBcrash\\-kinds\\fR scenario): a file naming a kind of crash (\\fBtrap\\fR, \\fBfault\\fR, \\fBabort\\fR, \\fBoom\\fR). When set at the server's start, SIGUSR1 makes the server crash that way in its data path. Unset, the server ignores it and SIGUSR1 keeps its default action.
        """

    static let files = """
        .TP
        .I /run/vduse\\-export/NAME.json
        The record of a running export (mode 0600; the directory is 0700), read by \\fBlist\\fR, \\fBdel\\fR and \\fBresize\\fR.
        .TP
        .I /run/vduse\\-export/NAME.job
        The block job (\\fBcommit\\fR, \\fBmirror\\fR) running on the export and its progress, written by its server while the job runs, shown by \\fBlist\\fR.
        .TP
        .I /run/vduse\\-export/NAME.sock
        The QMP control socket of the export's server.
        .TP
        .I /run/vduse\\-export/NAME.log
        The log of a server started by \\fBadd\\fR.
        .TP
        .I /etc/vduse\\-export/NAME.conf
        A persistent export: \\fBVDUSE_EXPORT_ARGS=\\fR\\fIserve arguments\\fR, written by \\fBadd \\-\\-persist\\fR, rewritten by the server before a \\fBsnapshot\\fR, \\fBcommit\\fR or \\fBmirror\\fR switch takes effect (the new image's nodes), removed by \\fBdel\\fR; read by \\fBvduse\\-export@NAME.service\\fR at boot.
        .TP
        .I /etc/systemd/system/vduse\\-export@NAME.service.d/persist.conf
        Written with the configuration: orders the unit after the mount that holds the image.
        .TP
        .I /lib/systemd/system/vduse\\-export@.service
        The template unit: one export per instance, ready (Type=notify) once its disk exists, before \\fIlocal\\-fs.target\\fR.
        .TP
        .I /lib/udev/rules.d/60\\-vduse\\-export.rules
        Keeps \\fI/dev/vduse/*\\fR root-only and links \\fI/dev/disk/by\\-vduse/NAME\\fR (and \\fINAME\\-partN\\fR) to each disk.
        .TP
        .I /usr/libexec/vduse\\-export/qemu\\-storage\\-daemon
        A link to \\fBvduse\\-export\\fR: run under this name it takes qemu\\-storage\\-daemon's command line and leaves \\fBvdpa dev add\\fR to the caller.
        .TP
        .I /dev/vduse/control
        The kernel's VDUSE control device (module \\fBvduse\\fR).
        """

    static let examples = """
        Export a 1 GiB image, put a file system on it, grow it by 1 GiB, remove it:
        .PP
        .nf
        .RS
        # vduse\\-export add /srv/images/web01.img
        /dev/vda
        # mkfs.ext4 \\-q /dev/vda
        # vduse\\-export resize web01 +1G
        /dev/vda 2147483648
        # vduse\\-export list
        # vduse\\-export stats web01
        # vduse\\-export del web01
        .RE
        .fi
        .PP
        Have the disk back after every reboot, mounted through fstab:
        .PP
        .nf
        .RS
        # vduse\\-export add /srv/images/db.img \\-\\-name db \\-\\-persist
        # echo '/dev/disk/by\\-vduse/db /srv/db ext4 x\\-systemd.requires=vduse\\-export@db.service 0 2' >> /etc/fstab
        .RE
        .fi
        .PP
        \\fBx\\-systemd.requires\\fR makes systemd unmount the file system before it stops the export at shutdown.
        .PP
        qemu\\-storage\\-daemon style, with a QMP socket:
        .PP
        .nf
        .RS
        # vduse\\-export serve \\e
            \\-\\-blockdev driver=file,node\\-name=file0,filename=/srv/images/web01.img \\e
            \\-\\-export type=vduse\\-blk,id=exp0,node\\-name=file0,name=web01,writable=on \\e
            \\-\\-qmp /run/web01.qmp
        .RE
        .fi
        .PP
        A script written for qemu\\-storage\\-daemon, unchanged but for the program it runs (the package's link
        \\fI/usr/libexec/vduse\\-export/qemu\\-storage\\-daemon\\fR takes QEMU's options without \\fBserve\\fR and leaves
        binding to the caller, as \\fBserve \\-\\-no\\-bind\\fR):
        .PP
        .nf
        .RS
        # /usr/libexec/vduse\\-export/qemu\\-storage\\-daemon \\-\\-daemonize \\-\\-pidfile /run/vol1.pid \\e
            \\-\\-blockdev '{"driver":"file","node\\-name":"disk1","filename":"/srv/vol1.img"}' \\e
            \\-\\-export vduse\\-blk,id=vol1,node\\-name=disk1,name=vol1,num\\-queues=16,queue\\-size=128,writable=true
        # vdpa dev add name vol1 mgmtdev vduse
        # vdpa dev del vol1; kill $(cat /run/vol1.pid)
        .RE
        .fi
        """

    static let seeAlso = """
        .BR qemu\\-storage\\-daemon (1),
        .BR vdpa (8),
        .BR udev (7),
        .BR systemd.unit (5),
        .BR fstab (5)
        """

    static var all: [(title: String, body: String)] {
        [("EXIT STATUS", exitStatus), ("ENVIRONMENT", environment), ("FILES", files), ("EXAMPLES", examples), ("SEE ALSO", seeAlso)]
    }
}
