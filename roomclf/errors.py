"""The base of every roomclf error that means "bad input", shown to users as one line."""


class RoomclfError(Exception):
    pass
