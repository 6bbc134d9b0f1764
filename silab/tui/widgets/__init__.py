"""The lab's widgets: plots, panels and dialogs (styles live in silab/tui/silab.tcss)."""
from silab.tui.widgets.dialogs import AddRunDialog, ExtendDialog, InjectDialog, QuitDialog, SettingsDialog
from silab.tui.widgets.panels import EventLog, HistoryTable, ParamTable, RoundPanel, StatusLine
from silab.tui.widgets.plots import AccuracyChart, NllChart

__all__ = ["AccuracyChart", "AddRunDialog", "EventLog", "ExtendDialog", "HistoryTable", "InjectDialog", "NllChart", "ParamTable", "QuitDialog",
           "RoundPanel", "SettingsDialog", "StatusLine"]
