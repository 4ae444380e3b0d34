"""Nuke's colour space names -> the OpenColorIO names the Mattebox server accepts (--colour-space).

Nuke names a Read's colour space in its own terms: nuke-default LUTs ("linear", "sRGB", "Cineon",
"Gamma2.2", ...), "default (linear)" for the default of the file type, an OCIO config's names
("ACES - ACEScg", "Utility - sRGB - Texture", "ACEScct", ...), sometimes with a family prefix
("ACES/ACEScg"). The server converts with OpenImageIO's built-in OpenColorIO config (OCIO 2
cg-config: the names and aliases below) and decodes Cineon itself with Nuke's curve (models/colour.py);
names it lacks (rec709 and the camera logs of nuke-default: AlexaV3LogC, SLog, REDLog, ...) map to
None, and the plugin then renders that input through Nuke, which converts it into the script's
working space.

Nuke's "linear" (the working space of nuke-default: linear light, Rec.709 primaries) is the server's
scene_linear; a raw read (no conversion) is in the script's working space.
"""

SCENE_LINEAR = "scene_linear"
#: a Read whose values are taken as they are (raw data, colorspace raw): in the working space
WORKING = "<working space>"

#: the server's colour spaces (OpenImageIO's built-in OCIO config) and their aliases
_OCIO = {
    "ACES2065-1": ("aces2065_1", "aces", "ACES - ACES2065-1", "lin_ap0", "lin_ap0_scene"),
    "ACEScc": ("ACES - ACEScc", "acescc_ap1"),
    "ACEScct": ("ACES - ACEScct", "acescct_ap1"),
    "ACEScg": ("ACES - ACEScg", "lin_ap1", "lin_ap1_scene"),
    "sRGB Encoded Rec.709 (sRGB)": ("srgb_encoded_rec709_srgb", "srgb_texture", "srgb_rec709_scene",
                                    "Utility - sRGB - Texture", "Input - Generic - sRGB - Texture",
                                    "sRGB - Texture", "srgb_tx"),
    "Gamma 1.8 Encoded Rec.709": ("g18_encoded_rec709", "g18_rec709", "Utility - Gamma 1.8 - Rec.709 - Texture",
                                  "Gamma 1.8 Rec.709 - Texture", "g18_rec709_tx"),
    "Gamma 2.2 Encoded Rec.709": ("g22_encoded_rec709", "g22_rec709", "Utility - Gamma 2.2 - Rec.709 - Texture",
                                  "Gamma 2.2 Rec.709 - Texture", "g22_rec709_tx"),
    "Gamma 2.4 Encoded Rec.709": ("g24_encoded_rec709", "g24_rec709", "Gamma 2.4 Rec.709 - Texture",
                                  "g24_rec709_tx"),
    "sRGB Encoded P3-D65": ("srgb_encoded_p3d65", "srgb_p3d65", "srgb_displayp3", "sRGB Encoded P3-D65 - Texture"),
    "Gamma 2.2 Encoded AdobeRGB": ("g22_encoded_adobergb", "adobergb"),
    "sRGB Encoded AP1": ("srgb_encoded_ap1", "srgb_ap1", "sRGB Encoded AP1 - Texture"),
    "Gamma 2.2 Encoded AP1": ("g22_encoded_ap1", "g22_ap1", "Gamma 2.2 AP1 - Texture"),
    "CIE XYZ-D65 - Scene-referred": ("cie_xyz_d65_scene", "lin_ciexyzd65_scene"),
    "Linear AdobeRGB": ("lin_adobergb", "Utility - Linear - Adobe RGB"),
    "Linear P3-D65": ("lin_p3d65", "lin_displayp3", "Utility - Linear - P3-D65", "Linear Display P3"),
    "Linear Rec.2020": ("lin_rec2020", "Utility - Linear - Rec.2020"),
    "Linear Rec.709 (sRGB)": ("lin_rec709_srgb", "lin_rec709", "lin_srgb", "Utility - Linear - sRGB",
                              "Utility - Linear - Rec.709"),
}

#: nuke-default names (and OCIO roles) the server has under another name
_NUKE = {
    "linear": SCENE_LINEAR, "scene_linear": SCENE_LINEAR, "sRGB": "sRGB", "Gamma1.8": "Gamma 1.8 Encoded Rec.709",
    "Gamma2.2": "Gamma 2.2 Encoded Rec.709", "Gamma2.4": "Gamma 2.4 Encoded Rec.709",
    "AdobeRGB": "Gamma 2.2 Encoded AdobeRGB",
    "Cineon": "Cineon", "raw": WORKING, "Raw": WORKING, "Utility - Raw": WORKING, "data": WORKING, "none": WORKING,
}

_LOOKUP = {}
for _name, _aliases in _OCIO.items():
    for _alias in (_name,) + _aliases:
        _LOOKUP[_alias.lower()] = _name
for _alias, _name in _NUKE.items():
    _LOOKUP[_alias.lower()] = _name


def server_name(nuke_name):
    """The server's name for a Nuke colour space name: "" for "" / "default" (the file's own, as the
    server decides), WORKING for raw, None when the server has no such space."""
    name = (nuke_name or "").strip()
    if name.startswith("default (") and name.endswith(")"):
        name = name[len("default ("):-1].strip()  # Nuke's default for the file type, named
    if name in ("", "default"):
        return ""
    found = _LOOKUP.get(name.lower())
    if found is None and "/" in name:
        found = _LOOKUP.get(name.rsplit("/", 1)[1].strip().lower())  # an OCIO family: "ACES/ACEScg"
    return found


def working_space(root):
    """The script's working space (the Root's workingSpaceLUT knob, nuke-default: linear), as the server
    names it; scene_linear when Nuke's name has no server equivalent."""
    knob = root.knob("workingSpaceLUT")
    found = server_name(knob.value() if knob is not None else "linear")
    return found if found and found != WORKING else SCENE_LINEAR


#: Nuke's default LUT knob on the Root per kind of file, and its nuke-default value
_DEFAULT_LUT = {"float": ("floatLut", "linear"), "log": ("logLut", "Cineon"), "int": ("int8Lut", "sRGB")}
_FLOAT = (".exr", ".hdr", ".pfm")
_LOG = (".dpx", ".cin")


def is_default(read):
    """Whether a Read takes Nuke's default colour space for its file type (raw off, colorspace default)."""
    raw, knob = read.knob("raw"), read.knob("colorspace")
    name = (knob.value() if knob is not None else "default").strip()
    return not (raw is not None and raw.value()) and (name == "default" or name.startswith("default ("))


def read_space(read, root):
    """The colour space of a plain Read's pixels as the server names it: the Read's colorspace knob
    (raw knob on: the working space; "default": the Root's default LUT for that kind of file, as Nuke
    picks it); None when the server has no such space (the input must be rendered through Nuke)."""
    raw = read.knob("raw")
    if raw is not None and raw.value():
        return working_space(root)
    knob = read.knob("colorspace")
    name = knob.value() if knob is not None else "default"
    found = server_name(name)
    if found == "":
        path = read["file"].value().lower()
        kind = "float" if path.endswith(_FLOAT) else "log" if path.endswith(_LOG) else "int"
        lut, fallback = _DEFAULT_LUT[kind]
        lut_knob = root.knob(lut)
        found = server_name(lut_knob.value() if lut_knob is not None else fallback)
        if found == "":
            found = server_name(fallback)
    if found == WORKING:
        return working_space(root)
    return found
