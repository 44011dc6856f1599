"""A small desktop notification server for tests (Desktop Notifications Specification 1.2):
owns org.freedesktop.Notifications on the session bus in DBUS_SESSION_BUS_ADDRESS, prints
each Notify and CloseNotification as one JSON line on stdout, and emits ActionInvoked when
told on stdin: a line "ID ACTION". Needs python3 with dbus-python and PyGObject (Debian:
python3-dbus python3-gi)."""
import json
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

NAME = 'org.freedesktop.Notifications'
PATH = '/org/freedesktop/Notifications'


def say(obj):
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


class Server(dbus.service.Object):
    def __init__(self, bus):
        super().__init__(bus, PATH)
        self.next_id = 0

    @dbus.service.method(NAME, in_signature='susssasa{sv}i', out_signature='u')
    def Notify(self, app, replaces, icon, summary, body, actions, hints, timeout):
        self.next_id += 1
        say({'notify': self.next_id, 'app': str(app), 'summary': str(summary), 'body': str(body),
             'actions': [str(a) for a in actions], 'timeout': int(timeout)})
        return dbus.UInt32(self.next_id)

    @dbus.service.method(NAME, in_signature='u', out_signature='')
    def CloseNotification(self, nid):
        say({'closed': int(nid)})

    @dbus.service.method(NAME, in_signature='', out_signature='as')
    def GetCapabilities(self):
        return ['actions', 'body']

    @dbus.service.method(NAME, in_signature='', out_signature='ssss')
    def GetServerInformation(self):
        return ('test', 'tokend', '1', '1.2')

    @dbus.service.signal(NAME, signature='us')
    def ActionInvoked(self, nid, action):
        pass


def main():
    DBusGMainLoop(set_as_default=True)
    bus = dbus.SessionBus()
    server = Server(bus)
    name = dbus.service.BusName(NAME, bus)  # kept: a collected BusName releases the name
    loop = GLib.MainLoop()

    def on_stdin(source, condition):
        line = sys.stdin.readline()
        if not line:
            loop.quit()
            return False
        nid, action = line.split()
        server.ActionInvoked(dbus.UInt32(int(nid)), action)
        say({'invoked': int(nid), 'action': action})
        return True

    GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, on_stdin)
    say({'ready': True})
    loop.run()


main()
